// The results explorer (book/scorecard.md): every claim in a Tabulator table, one group per paper
// whose header shows its verdicts at a glance, filtered by theme, kind and result in the browser.
document.addEventListener("DOMContentLoaded", () => {
  const rows = JSON.parse(document.getElementById("repro-scorecard").textContent);
  const count = document.getElementById("explorer-count");
  const escape = (text) => String(text ?? "").replace(/[&<>"]/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]);
  const verdictClass = (result) => "verdict-" + result.split(" ")[0].toLowerCase();

  function groupHeader(slug, n, data) {
    const tally = {};
    data.forEach((row) => { tally[row.result] = (tally[row.result] || 0) + 1; });
    const chips = Object.entries(tally).map(([result, k]) =>
      `<span class="repro-chip ${verdictClass(result)}">${k} ${escape(result)}</span>`).join(" ");
    return `<a href="${data[0].url}">${escape(data[0].title)}</a> ` +
      `<span class="repro-status">${escape(data[0].status)}</span> ${chips}`;
  }

  const table = new Tabulator("#repro-explorer", {
    data: rows,
    layout: "fitColumns",
    groupBy: "paper",
    groupHeader: groupHeader,
    columnDefaults: {headerSort: false, formatter: "textarea"},
    columns: [
      {title: "Kind", field: "kind", width: 70},
      {title: "Claim", field: "statement", widthGrow: 5},
      {title: "Source", field: "source", widthGrow: 2},
      {title: "Paper's value", field: "paper_value", widthGrow: 1},
      {title: "Ours", field: "measured", widthGrow: 2},
      {title: "Result", field: "result", width: 110, formatter: (cell) =>
        `<span class="${verdictClass(cell.getValue())}">${escape(cell.getValue())}</span>`},
      {title: "Seeds", field: "seeds_held", width: 64, formatter: (cell) => {
        const row = cell.getRow().getData();
        return row.seeds_run ? `${row.seeds_held} of ${row.seeds_run}` : "";
      }},
    ],
  });

  const filters = ["theme", "kind", "result"].map((name) => document.getElementById("filter-" + name));
  function apply() {
    const wanted = filters.map((select) => [select.id.replace("filter-", ""), select.value])
      .filter(([, value]) => value);
    table.setFilter((row) => wanted.every(([field, value]) => row[field] === value));
  }
  filters.forEach((select) => select.addEventListener("change", apply));
  table.on("dataFiltered", (_, shown) => { count.textContent = `${shown.length} of ${rows.length} claims`; });
  table.on("tableBuilt", () => { count.textContent = `${rows.length} of ${rows.length} claims`; });
});
