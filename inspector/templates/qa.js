// The part page's keys: d / 1-9 / f label, n / p step, the view keys switch the picture, ? shows them.
(function () {
  "use strict";
  const byId = (id) => document.getElementById(id);
  const form = byId("decision");
  const kinds = [...document.querySelectorAll("#kinds .kind")];
  let askingKind = false;

  function show(tab) {
    if (!tab || tab.disabled) return;
    document.querySelectorAll("#tabs .tab").forEach((t) => t.classList.toggle("on", t === tab));
    const picture = byId("picture"), full = byId("full");
    if (picture) { picture.src = tab.dataset.src; picture.alt = tab.textContent.trim(); }
    if (full) full.href = tab.dataset.src;
  }
  document.querySelectorAll("#tabs .tab").forEach((tab) => tab.addEventListener("click", () => show(tab)));

  let submitting = false;  // one decision per page: a key held down or pressed twice sends it once
  function submitWith(button) {
    if (!form || !button || submitting) return;
    submitting = true;
    form.requestSubmit(button);
  }
  function follow(id) {
    const link = byId(id);
    if (link) window.location.href = link.href;
  }
  function askKind(on) {
    askingKind = on;
    const row = byId("kinds");
    if (row) row.classList.toggle("asking", on);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable)) {
      if (event.key === "Escape") target.blur();
      return;
    }
    const key = event.key;
    let handled = true;
    if (key === "Escape") askKind(false);
    else if (key === "d") {
      if (kinds.length && !askingKind) askKind(true);  // a kind, or d again for none
      else submitWith(byId("confirm"));
    } else if (key === "Enter" && askingKind) submitWith(byId("confirm"));
    else if (/^[1-9]$/.test(key) && kinds[Number(key) - 1]) submitWith(kinds[Number(key) - 1]);
    else if (key === "f") submitWith(byId("dismiss"));
    else if (key === "n") follow("next");
    else if (key === "p") follow("previous");
    else if (key === "?") { const keys = byId("keys"); keys.hidden = !keys.hidden; }
    else {
      const tab = [...document.querySelectorAll("#tabs .tab")].find((t) => t.dataset.key === key);
      if (tab) show(tab); else handled = false;
    }
    if (handled) event.preventDefault();
  });
  const link = byId("keys-link");
  if (link) link.addEventListener("click", (event) => { event.preventDefault(); byId("keys").hidden = !byId("keys").hidden; });
})();
