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

// The schedule's calendar (scheduling/calendar.py): rows are 5 minutes from local midnight; only
// those from data-first to data-last are shown, and each block takes its rows from data-row and
// data-span. Set here because the CSP allows no inline style; run again on every htmx swap (a
// block redrawn by the appointment panel).
function placeCalendar(root) {
  var calendar = document.querySelector(".calendar[data-first]");
  if (!calendar) {
    return;
  }
  var first = parseInt(calendar.getAttribute("data-first"), 10);
  var last = parseInt(calendar.getAttribute("data-last"), 10);
  var rows = [];
  if (first > 1) { rows.push("repeat(" + (first - 1) + ", 0)"); }
  rows.push("repeat(" + (last - first) + ", var(--five))");
  if (last <= 288) { rows.push("repeat(" + (289 - last) + ", 0)"); }
  calendar.querySelectorAll(".cal-body").forEach(function (body) {
    body.style.gridTemplateRows = rows.join(" ");
  });
  (root || calendar).querySelectorAll("[data-row]").forEach(function (block) {
    block.style.gridRow = block.getAttribute("data-row") + " / span " + block.getAttribute("data-span");
  });
}
document.addEventListener("DOMContentLoaded", function () { placeCalendar(); });
document.addEventListener("htmx:load", function (event) { placeCalendar(event.detail.elt.parentNode || undefined); });
// The appointment panel's Close (a drawer on a tablet): back to the hint, the calendar uncovered.
document.addEventListener("click", function (event) {
  var close = event.target.closest("[data-close-panel]");
  var panel = close && close.closest("#panel");
  if (panel) {
    panel.replaceChildren();
    var hint = document.createElement("p");
    hint.className = "muted";
    hint.textContent = "Choose an appointment to see it here, or an empty slot to book.";
    panel.appendChild(hint);
  }
});
