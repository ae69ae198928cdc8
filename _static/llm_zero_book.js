// Figures drawn wider than the reading column are shrunk to fit it; a click shows one at its full
// size over the page (a second click, or Escape, closes it).
(function () {
  function close() {
    document.querySelectorAll(".llmz-zoom").forEach((el) => el.remove());
  }
  function open(img) {
    const layer = document.createElement("div");
    layer.className = "llmz-zoom";
    const big = document.createElement("img");
    big.src = img.src;
    big.alt = img.alt;
    layer.appendChild(big);
    layer.addEventListener("click", close);
    document.body.appendChild(layer);
  }
  function mark(img) {
    if (img.naturalWidth > img.clientWidth * 1.1) {
      img.classList.add("llmz-zoomable");
      img.title = img.title || "Click to open at full size";
    }
  }
  window.addEventListener("load", function () {
    document.querySelectorAll("div.cell_output img, figure img").forEach(mark);
    document.addEventListener("click", function (ev) {
      const img = ev.target.closest && ev.target.closest("img.llmz-zoomable");
      if (img && !img.closest(".llmz-zoom")) open(img);
    });
    document.addEventListener("keydown", (ev) => ev.key === "Escape" && close());
  });
})();
