// Live dry run of the policy editor: on each change (debounced), the form is turned into a policy
// definition (the shape the server's form handling builds) and posted to the API's draft dry run;
// the counts are drawn in #preview. Without JavaScript the "Preview" button does the same.
(function () {
  "use strict";
  var form = document.getElementById("policy-form");
  var channel = document.getElementById("preview_channel");
  var box = document.getElementById("preview");
  var status = document.getElementById("preview-status");
  if (!form || !channel || !box) { return; }
  var meta = document.querySelector("meta[name=csrf-token]");
  var csrf = meta ? meta.content : "";
  var timer = null;
  var sequence = 0;
  var FLAGS = ["uncurated_cves", "signed_only", "no_link_scripts", "include_dependencies",
    "prune_unsatisfiable"];
  var TOTALS = [["upstream", "upstream"], ["kept", "kept"], ["excluded", "excluded"],
    ["would_add", "would add"], ["would_remove", "would remove"]];

  function value(name) {
    var field = form.elements.namedItem(name);
    return field && field.value !== undefined ? field.value.trim() : "";
  }

  function checked(name) {
    return Array.prototype.slice.call(form.querySelectorAll("input[name=" + name + "]:checked"))
      .map(function (box) { return box.value; });
  }

  function lines(name) {
    return value(name).split("\n").map(function (s) { return s.trim(); })
      .filter(function (s) { return s && s.charAt(0) !== "#"; });
  }

  function number(name) {
    var text = value(name);
    return text === "" ? null : Number(text);
  }

  function definition() {
    var d = {};
    var platforms = value("platforms").split(/[,\n]/).map(function (s) { return s.trim(); })
      .filter(Boolean);
    if (platforms.length) {
      d.platforms = platforms;
      d.platforms_mode = checked("platforms_mode")[0] || "in";
    }
    var licenses = checked("licenses");
    if (licenses.length) {
      d.licenses = licenses;
      d.licenses_mode = checked("licenses_mode")[0] || "not_in";
    }
    ["only_specs", "exclude_specs", "exceptions"].forEach(function (key) {
      var specs = lines(key);
      if (specs.length) { d[key] = specs; }
    });
    if (value("date_from")) { d.date_from = value("date_from") + "T00:00:00+00:00"; }
    if (value("date_to")) { d.date_to = value("date_to") + "T23:59:59+00:00"; }
    if (number("cooldown_days") !== null) { d.cooldown_days = number("cooldown_days"); }
    if (number("cve_threshold") !== null) {
      d.cve_score = {
        threshold: number("cve_threshold"),
        operator: value("cve_operator") || ">=",
        statuses: checked("cve_statuses"),
      };
    }
    FLAGS.forEach(function (key) { if (checked(key).length) { d[key] = true; } });
    if (number("keep_latest") !== null) { d.keep_latest = number("keep_latest"); }
    return d;
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function samplesOf(mirror, key) {
    var found = [];
    mirror.subdirs.forEach(function (sd) {
      (sd.samples[key] || []).forEach(function (fn) { found.push(sd.subdir + "/" + fn); });
    });
    return found.slice(0, 5);
  }

  function listOf(mirror, key) {
    var found = [];
    mirror.subdirs.forEach(function (sd) {
      sd[key].forEach(function (fn) { found.push(sd.subdir + "/" + fn); });
    });
    return found.slice(0, 10);
  }

  function drawMirror(m) {
    var part = el("div", "preview-mirror");
    part.dataset.mirror = m.mirror;
    var title = el("h3", "", "Mirror " + m.mirror + " ");
    title.appendChild(el("span", "muted", "— policies " + (m.policies.join(", ") || "none")));
    part.appendChild(title);
    var totals = el("div", "totals");
    TOTALS.forEach(function (pair) {
      var cell = el("div");
      var strong = el("strong", "", m.totals[pair[0]]);
      strong.dataset.total = pair[0];
      cell.appendChild(strong);
      cell.appendChild(document.createTextNode(pair[1]));
      totals.appendChild(cell);
    });
    part.appendChild(totals);
    var reasons = Object.keys(m.totals.by_reason || {});
    if (reasons.length) {
      var table = el("table", "list compact reasons");
      var head = el("tr");
      ["Excluded by", "Records", "For example"].forEach(function (h, i) {
        head.appendChild(el("th", i === 1 ? "num" : "", h));
      });
      table.appendChild(el("thead")).appendChild(head);
      var body = table.appendChild(el("tbody"));
      reasons.forEach(function (key) {
        var row = el("tr");
        row.dataset.reason = key;
        row.appendChild(el("td", "", key));
        row.appendChild(el("td", "num", m.totals.by_reason[key]));
        row.appendChild(el("td", "samples", samplesOf(m, key).join(", ")));
        body.appendChild(row);
      });
      part.appendChild(table);
    }
    (m.notes || []).forEach(function (note) { part.appendChild(el("p", "note", note)); });
    var adds = listOf(m, "add_samples");
    if (adds.length) { part.appendChild(el("p", "samples", "Would add: " + adds.join(", "))); }
    var removes = listOf(m, "remove_samples");
    if (removes.length) {
      part.appendChild(el("p", "samples", "Would remove: " + removes.join(", ")));
    }
    return part;
  }

  function problemText(response, body) {
    if (body && typeof body.detail === "string") { return body.detail; }
    if (body && body.errors && body.errors.length) {
      return body.errors.map(function (e) { return (e.loc || []).join(".") + ": " + e.msg; })
        .join("; ");
    }
    return "the preview failed (HTTP " + response.status + ")";
  }

  function refresh() {
    if (!channel.value) {
      status.textContent = "Pick a channel: the counts follow the form as you edit it.";
      box.replaceChildren();
      return;
    }
    var mine = ++sequence;
    status.textContent = "Computing…";
    status.className = "preview-status muted";
    var body = {
      channel: channel.value,
      name: form.dataset.policy || value("name") || "draft",
      definition: definition(),
    };
    fetch("/api/v1/policies/dry-run", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json",
        "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
    }).then(function (response) {
      return response.json().catch(function () { return null; }).then(function (data) {
        if (mine !== sequence) { return; }
        if (!response.ok) {
          status.textContent = problemText(response, data);
          status.className = "preview-status alert";
          return;
        }
        status.textContent = "Updated " + new Date().toLocaleTimeString() + ".";
        box.replaceChildren.apply(box, data.mirrors.map(drawMirror));
      });
    }, function () {
      if (mine === sequence) {
        status.textContent = "The preview could not reach the server.";
        status.className = "preview-status alert";
      }
    });
  }

  function later() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 600);
  }

  form.addEventListener("input", later);
  form.addEventListener("change", later);
  if (channel.value) { later(); }
})();
