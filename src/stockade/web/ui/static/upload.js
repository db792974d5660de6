// Upload with drag and drop and a progress bar per file. Without JavaScript the form posts every
// chosen file at once (multipart) to the page's own route; with it, dropped or chosen files go one
// request each to the REST API's upload route (the session cookie plus the X-CSRF-Token header),
// and each shows its progress (XMLHttpRequest upload events) and the server's answer.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  var zone = document.getElementById("dropzone");
  var input = document.getElementById("upload-files");
  var list = document.getElementById("upload-list");
  if (!form || !zone || !input || !list || !window.XMLHttpRequest || !window.FormData) { return; }
  var meta = document.querySelector("meta[name=csrf-token]");
  var csrf = meta ? meta.content : "";
  var api = form.getAttribute("data-api");
  var hint = zone.querySelector(".dropzone-hint");
  var pending = 0;
  var uploaded = 0;

  zone.classList.add("dropzone-active");
  if (hint) { hint.hidden = false; }

  function problemText(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      if (body && body.detail) { return body.detail; }
      if (body && body.title) { return body.title; }
    } catch (ignored) { /* not JSON */ }
    return "the server answered " + xhr.status;
  }

  function row(file) {
    var item = document.createElement("li");
    item.className = "upload-item";
    var name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    var state = document.createElement("span");
    state.className = "upload-state";
    state.textContent = "waiting";
    item.appendChild(name);
    item.appendChild(bar);
    item.appendChild(state);
    list.appendChild(item);
    list.hidden = false;
    return { item: item, bar: bar, state: state };
  }

  function finished() {
    pending -= 1;
    if (pending > 0 || uploaded === 0) { return; }
    var done = document.createElement("li");
    done.className = "upload-done";
    var link = document.createElement("a");
    link.href = window.location.pathname + "?ok=files-uploaded";
    link.id = "upload-reload";
    link.textContent = "Show the uploaded files";
    done.appendChild(link);
    list.appendChild(done);
  }

  function send(file, force) {
    var view = row(file);
    var body = new FormData();
    body.append("files", file, file.name);
    var xhr = new XMLHttpRequest();
    xhr.open("POST", force ? api + "?force=true" : api);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) {
        view.bar.value = Math.round((event.loaded / event.total) * 100);
        view.state.textContent = view.bar.value + "%";
      }
    });
    xhr.addEventListener("load", function () {
      if (xhr.status === 201) {
        view.bar.value = 100;
        view.state.textContent = "uploaded";
        view.item.classList.add("upload-ok");
        uploaded += 1;
      } else {
        view.state.textContent = "refused: " + problemText(xhr);
        view.item.classList.add("upload-failed");
      }
      finished();
    });
    xhr.addEventListener("error", function () {
      view.state.textContent = "failed: the connection broke";
      view.item.classList.add("upload-failed");
      finished();
    });
    view.state.textContent = "0%";
    xhr.send(body);
  }

  function sendAll(files) {
    var chosen = Array.prototype.slice.call(files || []);
    var force = document.getElementById("upload-force");
    var replace = Boolean(force && force.checked);
    pending += chosen.length;
    chosen.forEach(function (file) { send(file, replace); });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    sendAll(input.files);
    form.reset();
  });
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) {
      event.preventDefault();
      zone.classList.add("dropzone-over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function () { zone.classList.remove("dropzone-over"); });
  });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer) { sendAll(event.dataTransfer.files); }
  });
}());
