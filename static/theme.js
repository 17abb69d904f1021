// The colour scheme the user chose in the header (light or dark; none means "follow the system"),
// applied to <html data-theme> before the first paint. Loaded synchronously in <head>, so it must stay
// tiny: one localStorage read. static/app.js owns the header's control and writes the choice.
(function () {
  "use strict";
  try {
    var theme = window.localStorage.getItem("callboard:theme");
    if (theme === "light" || theme === "dark") document.documentElement.setAttribute("data-theme", theme);
  } catch (e) { /* storage refused (private mode, policy): follow the system */ }
})();
