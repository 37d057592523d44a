"use strict";
// The leaderboard page: the metric selector shows one metric's plots and tables; clicking a column
// header of a sortable table sorts its rows (numbers by data-value, high first on the first click).
const metric = document.getElementById("metric");

function showMetric() {
  for (const section of document.querySelectorAll(".by-metric")) section.hidden = section.dataset.metric !== metric.value;
}

function sortBy(table, column, header) {
  const numeric = header.dataset.sort === "num";
  const descending = header.dataset.dir !== "desc";
  for (const th of table.tHead.rows[0].cells) delete th.dataset.dir;
  header.dataset.dir = descending ? "desc" : "asc";
  const value = (row) => {
    const cell = row.cells[column];
    if (!numeric) return cell.textContent;
    const number = parseFloat(cell.dataset.value ?? cell.textContent);
    return Number.isNaN(number) ? null : number;
  };
  const rows = [...table.tBodies[0].rows];
  rows.sort((a, b) => {
    const x = value(a), y = value(b);
    if (x === null || y === null) return (x === null) - (y === null);
    const order = numeric ? x - y : x.localeCompare(y);
    return descending ? -order : order;
  });
  table.tBodies[0].append(...rows);
}

if (metric) {
  metric.addEventListener("change", showMetric);
  showMetric();  // the browser may restore an earlier choice on going back
}
for (const table of document.querySelectorAll("table.sortable")) {
  [...table.tHead.rows[0].cells].forEach((th, column) => {
    if (th.dataset.sort) th.addEventListener("click", () => sortBy(table, column, th));
  });
}
