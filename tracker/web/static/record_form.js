// Modality-aware findings (issue 14): a finding's field that only some modalities
// can show (data-modalities="radiograph ct") is hidden, and left out of the form,
// while the study's modality is another one. Without this script every field shows
// and the server refuses a value the modality cannot carry, beside its input.
(function () {
  "use strict";
  var modality = document.querySelector('form.record select[name="modality"]');
  if (!modality) {
    return;
  }
  function apply() {
    var chosen = modality.value;
    document.querySelectorAll("form.record [data-modalities]").forEach(function (box) {
      var fits = !chosen || box.getAttribute("data-modalities").split(" ").indexOf(chosen) >= 0;
      // a value the server refused stays in view, so it can be seen and cleared
      if (!fits && box.querySelector('[aria-invalid="true"]')) {
        fits = true;
      }
      box.hidden = !fits;
      box.querySelectorAll("input, select, textarea").forEach(function (input) {
        input.disabled = !fits;
      });
    });
  }
  modality.addEventListener("change", apply);
  apply();
})();
