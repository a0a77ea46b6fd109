// The overview's live updates: one server-sent event a second carries the whole snapshot,
// and the tables and charts are rebuilt from it. Values go in as text, never as HTML.
"use strict";
(function () {
  const root = document.getElementById("overview");
  if (!root) return;
  const live = document.getElementById("live");
  const taskUrl = root.dataset.taskUrl;

  function cell(row, value) {
    const td = document.createElement("td");
    if (value instanceof Node) td.appendChild(value); else td.textContent = value;
    row.appendChild(td);
    return td;
  }

  function fill(tableId, items, columns, emptyText) {
    const body = document.querySelector("#" + tableId + " tbody");
    const rows = items.map(function (item) {
      const tr = document.createElement("tr");
      columns.forEach(function (column) { cell(tr, column(item)); });
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = cell(tr, emptyText);
      td.colSpan = columns.length;
      rows.push(tr);
    }
    body.replaceChildren.apply(body, rows);
  }

  function status(value) {
    const span = document.createElement("span");
    span.className = "status " + value;
    span.textContent = value;
    return span;
  }

  function link(uuid) {
    const a = document.createElement("a");
    a.href = taskUrl + "/" + encodeURIComponent(uuid);
    a.textContent = uuid;
    return a;
  }

  function purge(queue) {
    const a = document.createElement("a");
    a.className = "button danger";
    a.href = root.dataset.purgeUrl + "?queue=" + encodeURIComponent(queue);
    a.textContent = "Purge";
    return a;
  }

  function chart(id, values, format) {
    const svg = document.getElementById(id);
    const max = Math.max.apply(null, values.concat([0]));
    const width = 300 / values.length;
    const ns = "http://www.w3.org/2000/svg";
    const bars = values.map(function (v, i) {
      const rect = document.createElementNS(ns, "rect");
      const h = max > 0 ? (v / max) * 76 : 0;
      rect.setAttribute("x", (i * width).toFixed(2));
      rect.setAttribute("y", (80 - h).toFixed(2));
      rect.setAttribute("width", Math.max(width - 1, 1).toFixed(2));
      rect.setAttribute("height", h.toFixed(2));
      const title = document.createElementNS(ns, "title");
      title.textContent = format(v);
      rect.appendChild(title);
      return rect;
    });
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "298"); label.setAttribute("y", "12");
    label.setAttribute("text-anchor", "end");
    label.textContent = "max " + format(max);
    bars.push(label);
    svg.replaceChildren.apply(svg, bars);
  }

  function show(snap) {
    Object.keys(snap.totals).forEach(function (key) {
      const el = document.querySelector('[data-total="' + key + '"]');
      if (el) el.textContent = snap.totals[key];
    });
    const canPurge = !!root.dataset.purgeUrl;
    fill("queues", snap.queues, [
      function (q) { return q.queue; }, function (q) { return String(q.waiting); },
    ].concat(canPurge ? [function (q) { return purge(q.queue); }] : []), "No queue.");
    fill("workers", snap.workers, [
      function (w) { return w.hostname; }, function (w) { return String(w.pid); },
      function (w) { return w.queues; }, function (w) { return String(w.concurrency); },
      function (w) { return String(w.running); }, function (w) { return String(w.finished); },
      function (w) { return String(w.failed); },
      function (w) { return w.heartbeat_ago + " s ago"; },
    ], "No live worker.");
    fill("recent", snap.recent, [
      function (t) { return t.task_name; }, function (t) { return status(t.status); },
      function (t) { return link(t.uuid); }, function (t) { return t.created_at; },
    ], "No task yet.");
    const s = snap.series;
    chart("chart-finished", s.map(function (m) { return m.finished; }),
          function (v) { return v + "/min"; });
    chart("chart-failed", s.map(function (m) { return m.finished ? m.failed / m.finished : 0; }),
          function (v) { return (v * 100).toFixed(1) + " %"; });
    chart("chart-latency", s.map(function (m) { return m.mean_seconds; }),
          function (v) { return v < 1 ? (v * 1000).toFixed(1) + " ms" : v.toFixed(2) + " s"; });
    live.textContent = "live · " + new Date(snap.at * 1000).toLocaleTimeString();
    live.className = "live on";
  }

  const source = new EventSource(root.dataset.events);
  source.addEventListener("snapshot", function (event) { show(JSON.parse(event.data)); });
  source.onerror = function () { live.textContent = "reconnecting…"; live.className = "live off"; };
})();
