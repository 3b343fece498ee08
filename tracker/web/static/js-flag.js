/* in <head>, before the page is drawn: styles for pages with script (no inline script
   under the Content-Security-Policy) */
document.documentElement.classList.add('js');
