// Live progress of a mirror run: polls the run and its log through the API every second while the
// run is pending or running, and updates the page drawn by the server (#run-live).
(function () {
  "use strict";
  var box = document.getElementById("run-live");
  if (!box) { return; }
  var runId = box.dataset.run;
  var after = parseInt(box.dataset.after || "0", 10);
  var logLimit = parseInt(box.dataset.logLimit || "0", 10);
  var ACTIVE = { pending: true, running: true };
  var failures = 0;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function size(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
  }

  function showState(run) {
    var badge = document.getElementById("run-state");
    badge.textContent = run.state;
    badge.className = "badge badge-run badge-run-" + run.state;
    box.dataset.state = run.state;
    document.getElementById("run-summary").textContent = run.summary || "";
  }

  function showSteps(steps) {
    var body = document.getElementById("run-steps");
    if (!steps.length) { return; }
    body.replaceChildren();
    steps.forEach(function (step) {
      var row = el("tr", "step-" + step.state);
      row.dataset.step = step.name;
      row.appendChild(el("td", "", step.label));
      row.appendChild(el("td", "", step.state));
      var cell = el("td");
      if (step.total) {
        var bar = el("progress");
        bar.max = step.total;
        bar.value = step.done;
        cell.appendChild(bar);
        cell.appendChild(el("span", "step-count", step.done + " / " + step.total));
      } else if (step.done) {
        cell.appendChild(el("span", "step-count", step.done));
      }
      row.appendChild(cell);
      body.appendChild(row);
    });
  }

  function showCounts(counts) {
    document.querySelectorAll("#run-counts [data-count]").forEach(function (dd) {
      var key = dd.dataset.count;
      var value = counts[key];
      if (value === undefined || value === null) { dd.textContent = "–"; return; }
      dd.textContent = key === "bytes_downloaded" ? size(value) : String(value);
    });
  }

  function showLog(lines) {
    if (!lines.length) { return; }
    var list = document.getElementById("run-log");
    var empty = document.getElementById("run-log-empty");
    if (empty) { empty.remove(); }
    lines.forEach(function (line) {
      var item = el("li", "log-" + line.level);
      item.dataset.id = line.id;
      var at = new Date(line.at);
      item.appendChild(el("time", "", at.toISOString().slice(11, 19)));
      item.appendChild(document.createTextNode(" "));
      item.appendChild(el("span", "", line.message));
      list.appendChild(item);
      after = Math.max(after, line.id);
    });
    while (logLimit > 0 && list.children.length > logLimit) { list.firstElementChild.remove(); }
    list.scrollTop = list.scrollHeight;
  }

  function finished() {
    var stop = document.getElementById("stop-form");
    if (stop) { stop.hidden = true; }
    var again = document.getElementById("run-now");
    if (again) { again.hidden = false; }
  }

  function get(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      });
  }

  function poll() {
    Promise.all([
      get("/api/v1/runs/" + runId),
      get("/api/v1/runs/" + runId + "/logs?after=" + after),
    ]).then(function (answers) {
      failures = 0;
      var run = answers[0];
      showLog(answers[1]);
      showSteps(run.steps || []);
      showCounts(run.counts || {});
      showState(run);
      if (ACTIVE[run.state]) {
        window.setTimeout(poll, 1000);
      } else {
        get("/api/v1/runs/" + runId + "/logs?after=" + after).then(showLog, function () {});
        finished();
      }
    }, function () {
      failures += 1;
      window.setTimeout(poll, Math.min(30000, 1000 * Math.pow(2, failures)));
    });
  }

  if (ACTIVE[box.dataset.state]) { window.setTimeout(poll, 1000); }
})();
