// What a keyboard or screen-reader user needs that the HTML alone does not give.
// A file of bilan's own (the pages' Content-Security-Policy allows no inline script).
(function () {
  "use strict";

  // After a refused form (the server marks <main data-refus>), the focus goes to the first
  // field in error, or to the first error message when it names no field: the person hears
  // what went wrong and can correct it at once, instead of starting again from the top.
  function focusFirstError() {
    var main = document.querySelector("main[data-refus]");
    if (!main) return;
    var invalid = main.querySelector("[aria-invalid=true]:not([disabled])");
    var message = main.querySelector(".field-error[role=alert]");
    var target = invalid || (message && fieldOf(message, main)) || message;
    if (!target) return;
    if (target === message) message.setAttribute("tabindex", "-1");
    target.focus();
  }

  function fieldOf(message, main) {
    if (!message.id) return null;
    var described = Array.prototype.find.call(main.querySelectorAll("[aria-describedby]"), function (element) {
      return element.getAttribute("aria-describedby").split(/\s+/).indexOf(message.id) >= 0;
    });
    if (described && described.tagName === "FIELDSET") {
      described = described.querySelector("input:checked, input, select, textarea");
    }
    if (described) described.setAttribute("aria-invalid", "true");
    return described || null;
  }

  // A table wider than the screen scrolls inside its box: the box takes the focus so that the
  // arrow keys scroll it, and is named after its table for a screen reader.
  function scrollableBoxes() {
    document.querySelectorAll(".scroll").forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("data-scroll-focus", "");
        if (!box.hasAttribute("aria-labelledby") && !box.hasAttribute("aria-label")) {
          box.setAttribute("role", "region");
          box.setAttribute("aria-label", name(box));
        }
      } else if (!scrolls && box.hasAttribute("data-scroll-focus")) {
        box.removeAttribute("tabindex");
        box.removeAttribute("data-scroll-focus");
      }
    });
  }

  function name(box) {
    var caption = box.querySelector("caption");
    var section = box.closest("section[aria-labelledby]");
    var heading = section && document.getElementById(section.getAttribute("aria-labelledby"));
    var text = (caption || heading || {}).textContent || "";
    return "Tableau défilant" + (text.trim() ? " : " + text.trim().replace(/\s+/g, " ") : "");
  }

  // A status box already on the page when it loads is not read out: its sentence is put back
  // a moment later, which screen readers announce (role="status" is a polite live region).
  function announceConfirmation() {
    var box = document.getElementById("confirmation");
    if (!box) return;
    var sentence = box.textContent;
    box.textContent = "";
    setTimeout(function () { box.textContent = sentence; }, 150);
  }

  document.addEventListener("DOMContentLoaded", function () {
    scrollableBoxes();
    focusFirstError();
    announceConfirmation();
  });
  window.addEventListener("resize", scrollableBoxes);
  document.addEventListener("htmx:afterSettle", scrollableBoxes);
})();
