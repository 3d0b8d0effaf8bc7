// Sorts the per-layer table by a clicked header. The order is kept in the address's hash
// (#sort=int8.time, #sort=-delta for descending) so a sorted view can be linked to and reloaded.
(function () {
  "use strict";
  var table = document.getElementById("layers");
  if (!table) return;
  var body = table.tBodies[0];
  var heads = Array.prototype.slice.call(table.querySelectorAll("th[data-sort]"));

  function value(row, key, numeric) {
    var cell = row.querySelector('[data-col="' + key + '"]');
    var raw = cell ? cell.getAttribute("data-v") : "";
    if (raw === null || raw === "") return null;
    return numeric ? parseFloat(raw) : raw.toLowerCase();
  }

  function sort(key, descending) {
    var head = heads.filter(function (h) { return h.getAttribute("data-sort") === key; })[0];
    if (!head) return;
    var numeric = head.getAttribute("data-kind") === "num";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, key, numeric), y = value(b, key, numeric);
      if (x === null || y === null) return (x === null) - (y === null);  // blanks last either way
      var order = x < y ? -1 : x > y ? 1 : 0;
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (h) {
      h.setAttribute("aria-sort", h === head ? (descending ? "descending" : "ascending") : "none");
    });
    table.setAttribute("data-sorted", (descending ? "-" : "") + key);
  }

  heads.forEach(function (head) {
    head.querySelector("button").addEventListener("click", function () {
      var key = head.getAttribute("data-sort");
      // Numbers start with the largest (the costly layers), text from A.
      var descending = head.getAttribute("aria-sort") === "none"
        ? head.getAttribute("data-kind") === "num" && key !== "index"
        : head.getAttribute("aria-sort") === "ascending";
      sort(key, descending);
      history.replaceState(null, "", "#sort=" + (descending ? "-" : "") + key);
    });
  });

  var wanted = /^#sort=(-?)(.+)$/.exec(decodeURIComponent(location.hash));
  if (wanted) sort(wanted[2], wanted[1] === "-");
  table.setAttribute("data-sortable", "ready");  // styles the headers as buttons only when they work
})();
