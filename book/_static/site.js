// Accessibility fixes for the theme's and the widget manager's markup (axe-core):
// * label-content-name-mismatch: the colour-mode button's icons are decorative (its
//   aria-label names it); the search button and the hidden-code toggles are named by
//   the text they show, so their extra aria-label goes.
// * aria-input-field-name: ipywidgets sliders (noUiSlider handles) get the name of
//   their widget's description label.
// * aria-required-children: the bibliography's citation list (role=list) holds anchors
//   beside its entries; it is not a list for assistive technology.
// Widgets and icons are rendered after load, so the fixes rerun on DOM changes.
function siteFixes() {
  document.querySelectorAll(".theme-switch-button svg, .theme-switch-button i").forEach((el) => {
    el.setAttribute("aria-hidden", "true");
    el.removeAttribute("role");
    el.removeAttribute("aria-labelledby");
    el.querySelectorAll("title").forEach((t) => t.remove());
  });
  document.querySelectorAll(".search-button__button[aria-label], details > summary[aria-label]")
    .forEach((el) => el.removeAttribute("aria-label"));
  document.querySelectorAll(".citation-list[role=list]").forEach((el) => el.removeAttribute("role"));
  document.querySelectorAll("[role=slider]:not([aria-label])").forEach((el) => {
    const widget = el.closest(".widget-slider, .widget-hslider, .jupyter-widgets");
    const label = widget?.querySelector(".widget-label")?.textContent.trim();
    el.setAttribute("aria-label", label || "slider");
  });
}
let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; siteFixes(); });
}
function start() {
  siteFixes();
  new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true });
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();

// The footer's link to the whole book as a PDF (book/_ext/site_fixes.py) is rendered
// hidden: show it only where book.pdf exists (scripts/build_pdf.py puts it at the site
// root; a build without it shows no dead link).
function showPdfLink() {
  document.querySelectorAll(".course-pdf-link[hidden]").forEach((span) => {
    const a = span.querySelector("a");
    if (!a || location.protocol === "file:") return;
    // data-pdf-checked says the answer came (the browser test waits for it)
    fetch(a.href, { method: "HEAD" })
      .then((r) => { if (r.ok) span.hidden = false; })
      .catch(() => {})
      .finally(() => { span.dataset.pdfChecked = "1"; });
  });
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", showPdfLink);
else showPdfLink();
