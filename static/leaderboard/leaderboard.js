// Leaderboard: submit the filters on change, sort the table by a column, switch heatmap tabs.
(function () {
  "use strict";
  document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
    form.addEventListener("change", function () { form.submit(); });
  });

  function cellValue(row, index, kind) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-value");
    if (raw === null) raw = cell.textContent.trim();
    if (kind === "num") {
      var n = parseFloat(raw);
      return isNaN(n) ? null : n;
    }
    return raw.toLowerCase();
  }

  document.querySelectorAll("table[data-sortable]").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      var button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", function () {
        var kind = th.getAttribute("data-kind") || "text";
        var current = th.getAttribute("aria-sort");
        // Numbers start high-to-low except ranks; text starts A-Z.
        var first = kind === "num" && !th.hasAttribute("data-low-first") ? "descending" : "ascending";
        var next = current === first ? (first === "ascending" ? "descending" : "ascending") : first;
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", next);
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var sign = next === "ascending" ? 1 : -1;
        rows.sort(function (a, b) {
          var x = cellValue(a, index, kind), y = cellValue(b, index, kind);
          if (x === null && y === null) return 0;
          if (x === null) return 1;  // missing values last, whatever the direction
          if (y === null) return -1;
          return x < y ? -sign : x > y ? sign : 0;
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });

  document.querySelectorAll("[data-tabs]").forEach(function (box) {
    var buttons = box.querySelectorAll("[role=tab]");
    function show(button) {
      buttons.forEach(function (b) {
        var selected = b === button;
        b.setAttribute("aria-selected", selected ? "true" : "false");
        b.tabIndex = selected ? 0 : -1;
        document.getElementById(b.getAttribute("aria-controls")).hidden = !selected;
      });
    }
    buttons.forEach(function (b) { b.addEventListener("click", function () { show(b); }); });
    if (buttons.length) show(buttons[0]);
  });
})();
