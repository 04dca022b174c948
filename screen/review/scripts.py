"""The scripts the review pages carry inline: the slice viewer, decisions and the index's
sorting and filtering. Plain browser JavaScript with no library, so a page works offline.

The series page reads its stack from ``<script id="stack" type="application/json">``: a PNG
mosaic of HU (see :mod:`screen.review.stack`) decoded through a canvas, windowed in place.
Decisions recorded so far come from ``decisions.js`` beside the index; a page served by
``screen review`` also posts new ones to ``decision`` under the report's address.
"""

from __future__ import annotations

DECISIONS_JS = """
function screenDecisions(key) {
  var all = window.SCREEN_DECISIONS || {};
  return Object.prototype.hasOwnProperty.call(all, key) ? all[key] : [];
}
function screenDecisionText(d) {
  return d.decision + ' (' + d.reviewer + ', ' + d.time.replace('T', ' ').slice(0, 16) + ')' +
    (d.note ? ': ' + d.note : '');
}
"""

VIEWER_JS = """
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('stack').textContent);
  var view = document.getElementById('slice'), over = document.getElementById('outline');
  var frame = document.getElementById('frame');
  var n = data.slices_k.length, R = data.rows, C = data.cols, size = R * C;
  var hu = null, bits = null, at = data.key_slice, centre = 40, width = 350;
  var show = {1: true, 2: true};
  view.width = over.width = C; view.height = over.height = R;
  var gv = view.getContext('2d'), go = over.getContext('2d');
  var grey = gv.createImageData(C, R), lines = go.createImageData(C, R);
  var colours = {1: [0, 210, 255], 2: [255, 40, 40]};

  function draw() {
    if (!hu) return;
    var lo = centre - width / 2, scale = 255 / width, base = at * size;
    var g = grey.data, l = lines.data;
    for (var p = 0; p < size; p++) {
      var v = (hu[base + p] - lo) * scale;
      v = v < 0 ? 0 : (v > 255 ? 255 : v);
      var q = 4 * p;
      g[q] = g[q + 1] = g[q + 2] = v; g[q + 3] = 255;
      var b = bits[base + p], c = null;
      if ((b & 2) && show[2]) c = colours[2]; else if ((b & 1) && show[1]) c = colours[1];
      if (c) { l[q] = c[0]; l[q + 1] = c[1]; l[q + 2] = c[2]; l[q + 3] = 255; } else { l[q + 3] = 0; }
    }
    gv.putImageData(grey, 0, 0);
    go.putImageData(lines, 0, 0);
    document.getElementById('position').textContent = 'Slice ' + (at + 1) + ' of ' + n +
      ' \\u00b7 position ' + data.positions_mm[at].toFixed(1) + ' mm';
    document.getElementById('window').textContent = 'W ' + Math.round(width) + ' / L ' + Math.round(centre);
    frame.setAttribute('data-slice', String(at));
    frame.setAttribute('data-window', Math.round(width) + '/' + Math.round(centre));
    scaleBar();
  }
  function goTo(k) { at = Math.max(0, Math.min(n - 1, k)); draw(); }
  function scaleBar() {
    var pxPerMm = view.clientWidth / C / data.pixel_mm, mm = 10;
    [10, 20, 50, 100].forEach(function (m) { if (m * pxPerMm <= 140) mm = m; });
    var bar = document.getElementById('scalebar');
    bar.style.width = Math.round(mm * pxPerMm) + 'px';
    bar.textContent = mm + ' mm';
  }
  // The PNG's bytes, eight punctuation marks for five bytes (see the stack's writer), as the
  // binary string btoa takes.
  function unmark(text, alphabet, size) {
    var value = new Uint8Array(128), v = new Uint8Array(8), out = [], chunk = [];
    for (var a = 0; a < 32; a++) value[alphabet.charCodeAt(a)] = a;
    for (var c = 0, o = 0; c < text.length && o < size; c += 8) {
      for (var m = 0; m < 8; m++) v[m] = value[text.charCodeAt(c + m)];
      var bytes = [(v[0] << 3) | (v[1] >> 2), ((v[1] & 3) << 6) | (v[2] << 1) | (v[3] >> 4),
        ((v[3] & 15) << 4) | (v[4] >> 1), ((v[4] & 1) << 7) | (v[5] << 2) | (v[6] >> 3),
        ((v[6] & 7) << 5) | v[7]];
      for (var b = 0; b < 5 && o < size; b++, o++) chunk.push(bytes[b]);
      if (chunk.length >= 8190) { out.push(String.fromCharCode.apply(null, chunk)); chunk = []; }
    }
    out.push(String.fromCharCode.apply(null, chunk));
    return out.join('');
  }
  function setWindow(c, w) { centre = c; width = Math.max(1, w); draw(); }

  var img = new Image();
  img.onload = function () {
    var c = document.createElement('canvas');
    c.width = C; c.height = R * n;
    var g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    var d = g.getImageData(0, 0, C, R * n).data;
    hu = new Int16Array(size * n); bits = new Uint8Array(size * n);
    for (var p = 0, q = 0; p < size * n; p++, q += 4) {
      hu[p] = d[q] * 256 + d[q + 1] - 1024; bits[p] = d[q + 2];
    }
    draw();
    document.body.setAttribute('data-ready', 'yes');
    document.body.setAttribute('data-ready-ms', String(Math.round(performance.now())));
  };
  img.src = 'data:image/png;base64,' + btoa(unmark(document.getElementById('stack-png').textContent,
                                                   data.alphabet, data.png_bytes));

  frame.addEventListener('wheel', function (e) {
    e.preventDefault();
    goTo(at + (e.deltaY > 0 ? 1 : -1));
  }, {passive: false});
  document.addEventListener('keydown', function (e) {
    if (e.target && /^(TEXTAREA|INPUT|SELECT)$/.test(e.target.tagName)) return;
    var step = {ArrowDown: 1, ArrowRight: 1, PageDown: 5, ArrowUp: -1, ArrowLeft: -1, PageUp: -5}[e.key];
    if (e.key === 'Home') step = -n;
    if (e.key === 'End') step = n;
    if (step) { e.preventDefault(); goTo(at + step); }
  });
  Array.prototype.forEach.call(document.querySelectorAll('button.preset'), function (b) {
    b.addEventListener('click', function () {
      setWindow(Number(b.getAttribute('data-centre')), Number(b.getAttribute('data-width')));
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('input.outline'), function (box) {
    box.addEventListener('change', function () { show[box.getAttribute('data-bit')] = box.checked; draw(); });
  });
  // Drag: left-right widens or narrows the window, up-down lowers or raises its level.
  var drag = null;
  frame.addEventListener('mousedown', function (e) {
    drag = {x: e.clientX, y: e.clientY, centre: centre, width: width}; e.preventDefault();
  });
  window.addEventListener('mouseup', function () { drag = null; });
  window.addEventListener('mousemove', function (e) {
    if (drag) setWindow(drag.centre - 2 * (e.clientY - drag.y), drag.width + 4 * (e.clientX - drag.x));
  });
  frame.addEventListener('mousemove', function (e) {
    if (!hu) return;
    var r = view.getBoundingClientRect();
    var i = Math.floor((e.clientX - r.left) / r.width * C), j = Math.floor((e.clientY - r.top) / r.height * R);
    if (i >= 0 && i < C && j >= 0 && j < R) {
      document.getElementById('hu').textContent = hu[at * size + j * C + i] + ' HU';
    }
  });
  window.addEventListener('resize', scaleBar);
  draw();
})();
"""

DECISION_FORM_JS = """
(function () {
  'use strict';
  var box = document.getElementById('decision');
  if (!box) return;
  var key = box.getAttribute('data-key'), list = document.getElementById('decisions');
  var state = document.getElementById('decision-state'), note = document.getElementById('note');
  var mine = screenDecisions(key).slice();
  function show() {
    list.innerHTML = '';
    mine.forEach(function (d) {
      var li = document.createElement('li'); li.textContent = screenDecisionText(d); list.appendChild(li);
    });
    if (!mine.length) { var li = document.createElement('li'); li.textContent = 'none yet'; list.appendChild(li); }
  }
  show();
  var served = location.protocol === 'http:' || location.protocol === 'https:';
  Array.prototype.forEach.call(box.querySelectorAll('button.decide'), function (b) {
    b.disabled = !served;
    b.addEventListener('click', function () {
      state.textContent = 'Recording\\u2026';
      fetch('../decision', {method: 'POST', headers: {'Content-Type': 'application/json'},
        body: JSON.stringify({series_key: key, decision: b.value, note: note.value})})
        .then(function (r) { return r.ok ? r.json() : r.text().then(function (t) { throw new Error(t); }); })
        .then(function (d) { mine.push(d); show(); state.textContent = 'Recorded: ' + d.decision; note.value = ''; })
        .catch(function (e) { state.textContent = 'Not recorded: ' + e.message; });
    });
  });
  note.disabled = !served;
  if (!served) state.textContent = 'Open this report with \\u201cscreen review\\u201d to record a decision.';
})();
"""

INDEX_JS = DECISIONS_JS + """
(function () {
  'use strict';
  var table = document.getElementById('worklist');
  var studies = Array.prototype.slice.call(table.querySelectorAll('tbody.study'));
  var only = document.getElementById('flagged-only'), where = document.getElementById('location');
  var from = document.getElementById('from'), to = document.getElementById('to');
  var order = document.getElementById('sort'), counts = document.getElementById('counts');
  Array.prototype.forEach.call(table.querySelectorAll('td.decision'), function (td) {
    var d = screenDecisions(td.getAttribute('data-key'));
    td.textContent = d.length ? d.map(screenDecisionText).join('; ') : '';
  });
  function apply() {
    var shownStudies = 0, shownSeries = 0, loc = where.value;
    var sorted = studies.slice().sort(function (a, b) {
      var da = a.getAttribute('data-date'), db = b.getAttribute('data-date');
      if (order.value === 'date-new') return db < da ? -1 : (db > da ? 1 : 0);
      if (order.value === 'date-old') return da < db ? -1 : (da > db ? 1 : 0);
      return Number(a.getAttribute('data-rank')) - Number(b.getAttribute('data-rank'));
    });
    sorted.forEach(function (study) {
      var date = study.getAttribute('data-date'), visible = 0;
      var inDates = (!from.value || (date && date >= from.value)) && (!to.value || (date && date <= to.value));
      Array.prototype.forEach.call(study.querySelectorAll('tr.series'), function (tr) {
        var ok = inDates && (!only.checked || tr.getAttribute('data-flagged') === 'yes') &&
          (!loc || tr.getAttribute('data-location') === loc);
        tr.hidden = !ok; if (ok) visible++;
      });
      study.hidden = visible === 0;
      if (visible) { shownStudies++; shownSeries += visible; }
      table.appendChild(study);
    });
    counts.textContent = 'Showing ' + shownSeries + ' series in ' + shownStudies + ' studies.';
  }
  [only, where, from, to, order].forEach(function (c) { c.addEventListener('change', apply); });
  apply();
})();
"""
