// Small behaviours without inline script (the CSP forbids it).
document.addEventListener("click", function (event) {
  var confirmBtn = event.target.closest("[data-confirm]");
  if (confirmBtn && !window.confirm(confirmBtn.getAttribute("data-confirm"))) {
    event.preventDefault();
  }
  var back = event.target.closest("[data-back]");
  if (back && window.history.length > 1) {
    event.preventDefault();
    window.history.back();
  }
});
document.addEventListener("change", function (event) {
  if (event.target.matches("[data-autosubmit]")) {
    event.target.form.submit();
  }
});

// A form marked data-submit-once (it moves money) is sent once: a second submit while the first
// request runs is dropped, and its buttons are disabled meanwhile. The server still deduplicates
// by the form's key; this keeps a double click from even trying.
function releaseForm(form) {
  form.removeAttribute("aria-busy");
  form.querySelectorAll("button, input[type=submit]").forEach(function (b) { b.disabled = false; });
}
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (!form.matches("form[data-submit-once]")) {
    return;
  }
  if (form.getAttribute("aria-busy") === "true") {
    event.preventDefault();
    event.stopImmediatePropagation();  // htmx listens on the form itself: it must not see this one
    return;
  }
  form.setAttribute("aria-busy", "true");
  // After this event, so the browser still sends the clicked button's own name and value.
  window.setTimeout(function () {
    form.querySelectorAll("button, input[type=submit]").forEach(function (b) { b.disabled = true; });
  }, 0);
}, true);
// An htmx request that ended without replacing its form (an error answer): the form works again.
document.addEventListener("htmx:afterRequest", function (event) {
  var form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("form[data-submit-once]");
  if (form && !event.detail.successful && document.body.contains(form)) {
    releaseForm(form);
  }
});
// Back to a page from the browser's cache: its forms were left busy.
window.addEventListener("pageshow", function () {
  document.querySelectorAll("form[data-submit-once][aria-busy=true]").forEach(releaseForm);
});
