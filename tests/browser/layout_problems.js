() => {
  // What a person would see as broken at this viewport (see layout_problems in conftest.py).
  const width = document.documentElement.clientWidth;
  const classes = (el) => (typeof el.className === "string" ? el.className.trim() : "");
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
    (classes(el) ? "." + classes(el).split(/\s+/).join(".") : "");
  const problems = [];
  if (document.documentElement.scrollWidth > width) problems.push("the page scrolls sideways");
  for (const el of document.body.querySelectorAll("*")) {
    if (el.closest("svg, pre, .markdown table, .visually-hidden, .skip")) continue;
    const style = getComputedStyle(el);
    const box = el.getBoundingClientRect();
    if (style.display === "none" || style.visibility === "hidden" || !box.width || !box.height) continue;
    if (box.left < -1 || box.right > width + 1) {
      problems.push(name(el) + " spans " + Math.round(box.left) + ".." + Math.round(box.right) + " px");
    }
    if (style.overflowX !== "visible" && el.tagName !== "TEXTAREA" && el.scrollWidth > el.clientWidth + 1) {
      problems.push(name(el) + " scrolls sideways: " + el.scrollWidth + " px in " + el.clientWidth);
    }
    for (const node of el.childNodes) {
      if (node.nodeType !== Node.TEXT_NODE) continue;
      const chars = node.textContent.replace(/\s+/g, "").length;
      if (chars < 3) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      const tops = new Set(Array.from(range.getClientRects()).filter((r) => r.width > 0).map((r) => Math.round(r.top)));
      if (tops.size >= 3 && chars <= 2 * tops.size) {
        problems.push(JSON.stringify(node.textContent.trim()) + " in " + name(el) + " takes " + tops.size + " lines");
      }
    }
  }
  return problems;
}
