/* every page: the folding menu, the first field's focus and the Go back link.
   A file, not inline: the Content-Security-Policy allows no inline script (issue 15). */
(function () {
  /* narrow screens fold the menu behind one button (style.css, max-width 640px) */
  var header = document.querySelector('header.top');
  var toggle = document.querySelector('.menu-toggle');
  if (header && toggle) {
    toggle.addEventListener('click', function () {
      toggle.setAttribute('aria-expanded', header.classList.toggle('open') ? 'true' : 'false');
    });
  }
  /* the first field of the page's form has focus (issue 14), unless the page says
     otherwise: an element with autofocus, a link to an anchor, a form marked
     data-focus="off", a filter form that does not start with a search box, a form
     with nothing to type in (Acknowledge), or a field below the fold (no jumping).
     A refused form puts focus on its first marked field instead. */
  var back = document.querySelectorAll('a[data-back]');
  for (var b = 0; b < back.length; b++) {
    back[b].addEventListener('click', function (event) {
      if (history.length > 1) { event.preventDefault(); history.back(); }
    });
  }
  var main = document.getElementById('main');
  if (!main || location.hash || document.querySelector('[autofocus]')) return;
  var typing = 'input:not([type=hidden]):not([type=submit]):not([type=button]):not([type=reset]):not([type=image]):not([type=file]):not([disabled]):not([readonly]),'
    + 'select:not([disabled]),textarea:not([disabled]):not([readonly])';
  function shown(el) { return el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden'; }
  function firstField(root) {
    var all = root.querySelectorAll(typing);
    for (var i = 0; i < all.length; i++) { if (shown(all[i])) return all[i]; }
    return null;
  }
  var invalid = main.querySelector('[aria-invalid="true"]');
  if (invalid && shown(invalid)) { invalid.focus(); return; }
  var forms = main.querySelectorAll('form');
  for (var i = 0; i < forms.length; i++) {
    var field = firstField(forms[i]);
    if (!field) continue;
    if (forms[i].getAttribute('data-focus') === 'off') return;
    var search = field.tagName === 'INPUT' && (field.type === 'text' || field.type === 'search');
    if ((forms[i].getAttribute('method') || 'get').toLowerCase() === 'get' && !search) return;
    var box = field.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) field.focus({ preventScroll: true });
    return;
  }
})();
