# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Labelling in the review pages (`detect --report`, `search --report`): yes / no / unsure for each detection, with
buttons or keys, an optional class for a "no", kept in the browser's localStorage under the run's hash (so a reload,
or the page opened again, shows them), and downloaded as a CSV in the annotations format `orcahello evaluate` and
`orcahello adapt` read: `file,start_s,end_s,label` with `srkw` (yes), `not_srkw` or `not_srkw:<class>` (no) and
`unsure`, one row per labelled detection, in the page's original order (recordings as scored, detections in time).

Still a static page with no server: the script is inline (no handler attributes: the Content-Security-Policy keeps
`default-src 'none'`), storage is the browser's own, and the CSV is a Blob downloaded through a link. Keys: up and
down arrows (or j and k) choose a row, y / n / u label it, 1-6 pick the class of a "no", 0 (or Backspace) clears.
"""

import html

# The classes a "no" may name (the false positives moderators see most: Orcasound's labels).
NO_CLASSES = (
    ("vessel", "vessel"),
    ("water", "water / flow noise"),
    ("jingle", "chain jingle"),
    ("humpback", "humpback"),
    ("biggs", "Bigg's killer whale"),
    ("other", "other"),
)
ANSWERS = (("yes", "Yes", "y"), ("no", "No", "n"), ("unsure", "Unsure", "u"))
LABELS_CSV_HEADER = "file,start_s,end_s,label"
STORAGE_PREFIX = "orcahello-labels:"

STYLE = """
.labelling { position: sticky; top: 0; background: #fafbfc; padding: 0.4em 0; z-index: 1; border-bottom: 1px solid #d7dce3; }
.labelling button { margin-right: 0.6em; } .labelling small { color: #5b6473; }
td.label { white-space: nowrap; }
td.label button { font-size: 0.85em; padding: 0.15em 0.5em; border: 1px solid #8a93a3; background: #fff; border-radius: 3px; }
td.label button[aria-pressed="true"][data-answer="yes"] { background: #0b7a33; color: #fff; }
td.label button[aria-pressed="true"][data-answer="no"] { background: #b00020; color: #fff; }
td.label button[aria-pressed="true"][data-answer="unsure"] { background: #9a5b00; color: #fff; }
td.label select { font-size: 0.85em; margin-left: 0.3em; }
tr.detection.selected { outline: 2px solid #1f6feb; outline-offset: -2px; }
"""

SCRIPT = """
(function () {
  var body = document.body;
  var storageKey = "%(prefix)s" + body.getAttribute("data-labels-key");
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.detection[data-file]"));
  var status = document.getElementById("labels-status");
  var selected = null;
  var labels = {};
  try { labels = JSON.parse(window.localStorage.getItem(storageKey) || "{}") || {}; } catch (error) { labels = {}; }

  function rowKey(row) {
    return JSON.stringify([row.getAttribute("data-file"), row.getAttribute("data-start"), row.getAttribute("data-end")]);
  }
  function save() {
    try { window.localStorage.setItem(storageKey, JSON.stringify(labels)); }
    catch (error) { status.textContent = "labels NOT saved (browser storage unavailable): download them now"; }
  }
  function counts() {
    var labelled = rows.filter(function (row) { return labels[rowKey(row)]; }).length;
    status.textContent = labelled + " of " + rows.length + " labelled";
  }
  function show(row) {
    var entry = labels[rowKey(row)] || null;
    row.setAttribute("data-answer", entry ? entry.answer : "");
    row.querySelectorAll("button[data-answer]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(entry !== null && button.getAttribute("data-answer") === entry.answer));
    });
    var select = row.querySelector("select.no-class");
    select.value = entry && entry.answer === "no" ? (entry.kind || "") : "";
    select.disabled = !(entry && entry.answer === "no");
  }
  function setAnswer(row, answer, kind) {
    var key = rowKey(row), entry = labels[key];
    if (!answer) { delete labels[key]; }
    else { labels[key] = {answer: answer, kind: answer === "no" ? (kind !== undefined ? kind : (entry && entry.kind) || "") : ""}; }
    save(); show(row); counts();
  }
  function select(row) {
    if (selected) { selected.classList.remove("selected"); }
    selected = row;
    if (row) { row.classList.add("selected"); row.scrollIntoView({block: "nearest"}); }
  }
  function visibleRows() { return Array.prototype.slice.call(document.querySelectorAll("tr.detection[data-file]")); }
  function move(step) {
    var order = visibleRows();
    var position = selected ? order.indexOf(selected) + step : (step > 0 ? 0 : order.length - 1);
    select(order[Math.max(0, Math.min(order.length - 1, position))] || null);
  }
  function csvField(text) { return /[",\\r\\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text; }
  function csvText() {
    var ordered = rows.slice().sort(function (a, b) {
      return Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
    });
    var lines = ["%(header)s"];
    ordered.forEach(function (row) {
      var entry = labels[rowKey(row)];
      if (!entry) { return; }
      var label = entry.answer === "yes" ? "srkw" : entry.answer === "unsure" ? "unsure"
        : entry.kind ? "not_srkw:" + entry.kind : "not_srkw";
      lines.push([row.getAttribute("data-file"), row.getAttribute("data-start"), row.getAttribute("data-end"), label]
        .map(csvField).join(","));
    });
    return lines.join("\\n") + "\\n";
  }
  function download() {
    var url = URL.createObjectURL(new Blob([csvText()], {type: "text/csv"}));
    var link = document.createElement("a");
    link.href = url;
    link.download = body.getAttribute("data-labels-file");
    body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  rows.forEach(show);
  counts();
  document.getElementById("labels-download").addEventListener("click", download);
  document.addEventListener("click", function (event) {
    var row = event.target.closest("tr.detection[data-file]");
    if (!row) { return; }
    select(row);  // a click anywhere on a row chooses it for the keys
    var button = event.target.closest("button[data-answer]");
    if (!button) { return; }
    var answer = button.getAttribute("data-answer"), current = labels[rowKey(row)];
    setAnswer(row, current && current.answer === answer ? "" : answer);
  });
  document.addEventListener("change", function (event) {
    if (!event.target.matches("tr.detection select.no-class")) { return; }
    var row = event.target.closest("tr");
    setAnswer(row, "no", event.target.value);
    select(row);
  });
  var kinds = %(kinds)s;
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var key = event.key;
    if (key === "ArrowDown" || key === "j") { move(1); event.preventDefault(); return; }
    if (key === "ArrowUp" || key === "k") { move(-1); event.preventDefault(); return; }
    if (!selected || event.target.matches("select, input, textarea")) { return; }
    var answers = {y: "yes", n: "no", u: "unsure"};
    if (answers[key]) { setAnswer(selected, answers[key]); }
    else if (key >= "1" && key <= String(kinds.length)) { setAnswer(selected, "no", kinds[Number(key) - 1]); }
    else if (key === "0" || key === "Backspace") { setAnswer(selected, ""); }
    else { return; }
    event.preventDefault();
  });
})();
"""


def labelling_script() -> str:
    """The page's labelling script, with the storage prefix, CSV header and classes filled in."""
    import json

    return SCRIPT % {
        "prefix": STORAGE_PREFIX,
        "header": LABELS_CSV_HEADER,
        "kinds": json.dumps([name for name, _ in NO_CLASSES]),
    }


def label_cell() -> str:
    """The label cell of a detection row: yes / no / unsure buttons and the class of a "no"."""
    buttons = "".join(
        f'<button type="button" data-answer="{answer}" aria-pressed="false" title="{text} (key {key})">{text}</button>'
        for answer, text, key in ANSWERS
    )
    options = '<option value="">no: class?</option>' + "".join(
        f'<option value="{name}">{number}: {html.escape(text)}</option>'
        for number, (name, text) in enumerate(NO_CLASSES, start=1)
    )
    return f'<td class="label">{buttons}<select class="no-class" aria-label="class of a no" disabled>{options}</select></td>'


def row_attributes(file: object, start: float, end: float, order: int) -> str:
    """
    The attributes that make a table row labellable: the recording as its results name it, its start and end in
    seconds (written into the CSV as they are here), and its place in the CSV.
    """
    escape = html.escape
    return (
        f'data-file="{escape(str(file))}" data-start="{float(start)!r}" data-end="{float(end)!r}" '
        f'data-order="{int(order)}"'
    )


def body_attributes(run_hash: str | None) -> str:
    """The page's `<body>` attributes: where its labels are kept and the name of the CSV it downloads."""
    key = html.escape(str(run_hash or "unknown-run"))
    return f'data-labels-key="{key}" data-labels-file="orcahello_labels_{key}.csv"'


def labelling_bar() -> str:
    """The bar above the table: the download button, the count, the keys."""
    keys = ", ".join(f"{number} {name}" for number, (name, _) in enumerate(NO_CLASSES, start=1))
    return (
        '<div class="labelling"><button type="button" id="labels-download">Download labels (CSV)</button>'
        '<span id="labels-status"></span><br><small>Label each detection: click, or choose a row with the arrow keys '
        f"(or j/k) and press y (SRKW), n (not SRKW), u (unsure); for a no, the class: {keys}; 0 clears. Labels stay "
        "in this browser (keyed by the run); the CSV is what orcahello evaluate and orcahello adapt read.</small></div>"
    )
