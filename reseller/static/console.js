// The console's small enhancements; every page works without this file.
(function () {
  "use strict";
  // Add a provider: picking a known one fills its protocol, address and names.
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (select.name !== "preset" || !select.form || !select.form.hasAttribute("data-presets")) return;
    var option = select.options[select.selectedIndex];
    var form = select.form;
    var url = option.getAttribute("data-url");
    if (!url) return;
    form.elements.url.value = url;
    form.elements.protocol.value = option.getAttribute("data-protocol");
    if (!form.elements.name.value) form.elements.name.value = option.value;
  });
})();
