// Accessibility fixes for the theme's navbar buttons (axe-core rule
// label-content-name-mismatch): an icon button's icons are decorative (its aria-label
// names it), and the search button is named by the text it shows.
function siteFixes() {
  document.querySelectorAll(".theme-switch-button svg, .theme-switch-button i").forEach((el) => {
    el.setAttribute("aria-hidden", "true");
    el.removeAttribute("role");
    el.removeAttribute("aria-labelledby");
  });
  document.querySelectorAll(".search-button__button[aria-label]").forEach((el) => {
    el.removeAttribute("aria-label");
  });
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", siteFixes);
else siteFixes();
// Font Awesome replaces <i> icons by <svg> after load: apply again once it has.
window.addEventListener("load", () => setTimeout(siteFixes, 0));
