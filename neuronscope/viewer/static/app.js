// neuronscope live toolbox: the page side. Plain JavaScript, no build step.
//
// Frames (a dropped image's bytes, or video/webcam frames drawn to a canvas and
// JPEG-encoded) go to the server over one WebSocket; each result comes back as
// one binary message: a JSON header and the pictures (layer grid, input, unit,
// backprop). At most two frames are in flight, and the server processes only the
// newest, so the view keeps up instead of lagging.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KIND_FRAME = 1, KIND_UPLOAD = 2;
  const BACKPROP_MODES = ["off", "gradient", "deconv", "guided"];
  const FILTERS = ["raw", "gray", "norm", "normblur"];
  const BOOSTS = ["0", "0.3", "0.5", "0.8", "1"];
  const GAMMAS = ["1", "0.7", "0.5", "0.3"];
  const SCALES = ["channel", "robust", "layer"];
  const ZOOMS = ["off", "unit", "backprop"];
  const MAX_IN_FLIGHT = 2;

  const ns = {
    info: null,
    state: {
      layer: null, unit: null, backprop: "off", bp_filter: "raw", fit: "crop", boost: 0, gamma: 1,
      scale: "channel", bp_contrast: "robust", show_back: false, bp_frozen: null,
    },
    pattern: false, // the grid shows every unit's synthetic preferred image
    patternTimer: null,
    patternStatus: null,
    actGrid: null, // the activation grid's geometry (pattern mode keeps it for when it ends)
    zoom: "off",
    allLayers: false,
    inputIndex: null,
    grid: null,
    stats: { results: 0, errors: 0, sent: 0, lastHeader: null, fps: 0, seqs: [] },
    ws: null,
    seq: 0,
    ackSeq: 0,
    lastSendTime: 0,
    live: null, // {kind: "webcam"|"video", stream?, url?}
    paused: false,
    resultTimes: [],
    uploadName: null,
    urls: {},
    synthTimer: null,
    pendingStates: 0, // state changes sent and not yet acknowledged
  };
  window.neuronscope = ns; // for tests and the curious

  // ------------------------------------------------------------------ messages

  let messageTimer = null;
  function showMessage(text, kind = "error", ms = 10000) {
    const el = $("message");
    el.textContent = text;
    el.className = "message " + kind;
    el.hidden = false;
    clearTimeout(messageTimer);
    if (ms) messageTimer = setTimeout(() => { el.hidden = true; }, ms);
  }

  // ------------------------------------------------------------------ socket

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.binaryType = "arraybuffer";
    ns.ws = ws;
    ws.onopen = () => {
      $("conn-status").className = "dot on";
      ns.ackSeq = ns.seq;
      ns.pendingStates = 0;
      sendState(ns.state.layer ? { ...ns.state } : {});
      if (ns.lastUpload) sendBytes(KIND_UPLOAD, ns.lastUpload);
    };
    ws.onclose = () => {
      $("conn-status").className = "dot off";
      setTimeout(connect, 1000);
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data === "string") onText(JSON.parse(ev.data));
      else onResult(ev.data);
    };
  }

  function sendState(changes) {
    if (ns.ws && ns.ws.readyState === WebSocket.OPEN) {
      const msg = { type: "state", ...changes };
      delete msg.fmt; delete msg.quality;
      ns.ws.send(JSON.stringify(msg));
      ns.pendingStates++;
    }
  }

  function sendBytes(kind, buffer) {
    if (!ns.ws || ns.ws.readyState !== WebSocket.OPEN) return false;
    const seq = ++ns.seq;
    const msg = new Uint8Array(5 + buffer.byteLength);
    const view = new DataView(msg.buffer);
    view.setUint8(0, kind);
    view.setUint32(1, seq);
    msg.set(new Uint8Array(buffer), 5);
    ns.ws.send(msg);
    ns.stats.sent++;
    ns.lastSendTime = performance.now();
    return true;
  }

  function onText(msg) {
    if (msg.type === "hello") {
      if (ns.pendingStates === 0) { Object.assign(ns.state, msg.state); syncControls(); }
    } else if (msg.type === "state") {
      // Local changes win while more are on their way; the last acknowledgement syncs.
      ns.pendingStates = Math.max(0, ns.pendingStates - 1);
      if (ns.pendingStates === 0) { Object.assign(ns.state, msg.state); syncControls(); drawHighlight(); }
    } else if (msg.type === "error") {
      if (msg.source === "message") ns.pendingStates = Math.max(0, ns.pendingStates - 1);
      ns.stats.errors++;
      if (msg.seq) ns.ackSeq = Math.max(ns.ackSeq, msg.seq);
      let text = msg.message;
      if (msg.source === "upload" && ns.uploadName) text = `${ns.uploadName}: ${text}`;
      if (msg.source === "frame" && ns.live) return; // one bad video frame: keep going quietly
      showMessage(text, "error");
    }
  }

  function onResult(buffer) {
    const view = new DataView(buffer);
    const n = view.getUint32(0);
    const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
    const base = 4 + n;
    ns.ackSeq = Math.max(ns.ackSeq, header.seq);
    ns.stats.results++;
    ns.stats.lastHeader = header;
    ns.stats.seqs.push(header.seq);
    if (ns.stats.seqs.length > 64) ns.stats.seqs.shift();
    const blobs = {};
    for (const b of header.blobs) blobs[b.name] = new Blob([new Uint8Array(buffer, base + b.offset, b.length)], { type: b.mime });

    ns.actGrid = header.grid;
    if (!ns.pattern) {
      setPicture("grid-img", blobs.grid);
      ns.grid = header.grid;
      $("grid-placeholder").hidden = true;
    }
    setPicture("input-img", blobs.input);
    $("input-placeholder").hidden = true;
    fitGrid();
    ns.state.layer = header.layer;
    $("layer-caption").textContent = header.layer;
    if (!ns.pattern) $("grid-caption").textContent = gridCaption(header);
    $("pane-grid").dataset.kind = ns.pattern ? "patterns" : header.grid_kind;
    drawTop5(header.top5);
    drawUnit(header, blobs);
    drawBackprop(header.backprop, blobs.backprop);
    drawHighlight();
    const st = header.stats;
    $("frame-count").textContent = String(st.processed);
    $("drop-count").textContent = String(st.dropped);
    $("timing").textContent = `model ${Math.round(header.timing.total_ms)} ms`;
    if (st.source === "upload") {
      $("input-caption").textContent = ns.uploadName ? `— ${ns.uploadName}` : "";
    } else if (st.source === "folder" && header.input) {
      ns.inputIndex = header.input.index;
      $("input-caption").textContent = `— ${header.input.name} (${header.input.index + 1}/${header.input.count})`;
      $("input-name").textContent = `${header.input.index + 1}/${header.input.count} ${header.input.name}`;
    }
    drawZoom();
    const now = performance.now();
    ns.resultTimes.push(now);
    while (ns.resultTimes.length > 30 || (ns.resultTimes.length && now - ns.resultTimes[0] > 3000)) ns.resultTimes.shift();
    const span = (ns.resultTimes[ns.resultTimes.length - 1] - ns.resultTimes[0]) / 1000;
    ns.stats.fps = ns.resultTimes.length > 1 && span > 0 ? (ns.resultTimes.length - 1) / span : 0;
    $("fps").textContent = ns.stats.fps.toFixed(1);
    document.body.dataset.frames = String(st.processed);
  }

  function setPicture(id, blob) {
    const img = $(id);
    if (!blob) { img.hidden = true; return; }
    const url = URL.createObjectURL(blob);
    const old = ns.urls[id];
    ns.urls[id] = url;
    img.onload = () => { if (old) URL.revokeObjectURL(old); };
    img.src = url;
    img.hidden = false;
  }

  // The grid is as wide as its pane but never taller than the window below it.
  function fitGrid() {
    const g = ns.grid, wrap = $("grid-wrap");
    if (!g) return;
    const room = window.innerHeight - wrap.getBoundingClientRect().top - window.scrollY - 14;
    const maxW = wrap.parentElement.clientWidth - 12;
    wrap.style.width = `${Math.max(120, Math.min(maxW, (room * g.width) / g.height))}px`;
  }
  window.addEventListener("resize", fitGrid);

  const fmt = (v) => (Math.abs(v) >= 100 || v === 0 ? v.toFixed(0) : v.toPrecision(3));

  const SCALE_NAMES = { channel: "each channel to its own range", robust: "robust over the layer", layer: "whole layer min…max" };

  function gridCaption(header) {
    const base = `${header.shape.join("×")} · ${header.grid.channels} channels`;
    if (header.grid_kind === "diffs") {
      const bp = header.backprop || {};
      const who = bp.source ? ` from ${bp.source}${bp.label ? " " + bp.label : ""}` : "";
      return `${base} · ${bp.mode} diffs${who} (green +, red −)`;
    }
    const note = header.grid_note ? ` · ${header.grid_note}` : "";
    return `${base} · ${SCALE_NAMES[header.scale] || header.scale} · range ${fmt(header.range[0])}…${fmt(header.range[1])}${note}`;
  }

  // Output units are classes: name them (logits:281 tabby).
  function unitName(layer, unit) {
    const labels = ns.info && ns.info.class_labels;
    if (layer === "logits" && labels && unit < labels.length) return `${layer}:${unit} ${labels[unit]}`;
    return `${layer}:${unit}`;
  }

  // ------------------------------------------------------------------ panes

  function drawTop5(top) {
    const ol = $("top5");
    ol.replaceChildren(...top.map((t) => {
      const li = document.createElement("li");
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(1, t.p * 100)}%`;
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = t.label;
      const p = document.createElement("span");
      p.className = "p";
      p.textContent = `${(t.p * 100).toFixed(1)}%`;
      li.append(bar, label, p);
      li.title = `class ${t.index}`;
      return li;
    }));
  }

  function drawUnit(header, blobs) {
    const u = header.unit;
    if (!u) {
      $("unit-img").hidden = true;
      $("unit-caption").textContent = "— click a map in the grid or press →";
      return;
    }
    setPicture("unit-img", blobs.unit);
    const [y, x] = u.argmax;
    $("unit-caption").textContent = `${unitName(header.layer, u.index)} · max ${fmt(u.max)} at (${x}, ${y}) · mean ${fmt(u.mean)}`;
    $("unit-caption").parentElement.title = $("unit-caption").textContent;
  }

  function drawBackprop(bp, blob) {
    const cap = $("backprop-caption");
    if (bp.status === "ok") {
      setPicture("backprop-img", blob);
      const from = bp.source ? ` · ${bp.frozen ? "frozen " : ""}${bp.source}${bp.label ? " " + bp.label : ""}` : "";
      cap.textContent = `${bp.mode} · ${bp.filter === "normblur" ? "norm+blur" : bp.filter} · ${bp.contrast}${from}`;
      $("pane-backprop").dataset.status = bp.status;
      return;
    }
    $("backprop-img").hidden = true;
    cap.textContent = bp.status === "off" ? "off — press b" : bp.message || bp.status;
    $("pane-backprop").dataset.status = bp.status;
  }

  function placeBox(hl, g, u) {
    if (!g || u === null || u === undefined || u >= g.channels || ns.zoom !== "off") { hl.hidden = true; return; }
    const col = u % g.cols, row = Math.floor(u / g.cols);
    const x = g.pad + col * (g.tile_w + g.pad), y = g.pad + row * (g.tile_h + g.pad);
    hl.style.left = `${(x / g.width) * 100}%`;
    hl.style.top = `${(y / g.height) * 100}%`;
    hl.style.width = `${(g.tile_w / g.width) * 100}%`;
    hl.style.height = `${(g.tile_h / g.height) * 100}%`;
    hl.hidden = false;
  }

  function drawHighlight() {
    placeBox($("grid-highlight"), ns.grid, ns.state.unit);
    const fz = ns.state.bp_frozen;
    placeBox($("frozen-highlight"), ns.grid, fz && fz[0] === ns.state.layer ? fz[1] : null);
    $("freeze-button").classList.toggle("active", !!fz);
    $("freeze-button").textContent = fz ? `Unfreeze ${unitName(fz[0], fz[1])}` : "Freeze unit";
  }

  // ------------------------------------------------------------------ zoom (z): the unit or backprop view fills the grid pane

  function drawZoom() {
    const z = $("zoom-img");
    const src = ns.zoom === "unit" ? $("unit-img") : ns.zoom === "backprop" ? $("backprop-img") : null;
    if (!src || src.hidden || !src.src) {
      z.hidden = true;
      $("grid-wrap").classList.remove("zoomed");
      if (src && ns.zoom !== "off") $("grid-caption").dataset.zoom = ns.zoom;
      return;
    }
    if (z.src !== src.src) z.src = src.src;
    z.hidden = false;
    $("grid-wrap").classList.add("zoomed");
    drawHighlight();
  }

  function setZoom(mode) {
    ns.zoom = mode;
    document.body.dataset.zoom = mode;
    drawZoom();
    drawHighlight();
  }

  // ------------------------------------------------------------------ unit choice

  function selectUnit(unit) {
    const g = ns.grid;
    const channels = g ? g.channels : layerInfo(ns.state.layer)?.channels || 0;
    if (unit !== null) {
      if (!channels) return;
      unit = Math.max(0, Math.min(channels - 1, unit));
    }
    if (unit === ns.state.unit) return;
    ns.state.unit = unit;
    sendState({ unit });
    drawHighlight();
    loadUnitExtras();
  }

  function selectLayer(name) {
    if (!name || name === ns.state.layer) return;
    ns.state.layer = name;
    ns.state.unit = null;
    ns.grid = null;
    if (!shownLayers().some((l) => l.name === name)) { ns.allLayers = true; $("all-layers").checked = true; fillLayers(); }
    $("layer-select").value = name;
    sendState({ layer: name });
    drawHighlight();
    loadUnitExtras();
    if (ns.pattern) loadPatterns();
  }

  const layerInfo = (name) => ns.info && ns.info.layers.find((l) => l.name === name);

  function stepLayer(delta) {
    const names = shownLayers().map((l) => l.name);
    const i = names.indexOf(ns.state.layer);
    const j = Math.max(0, Math.min(names.length - 1, i + delta));
    selectLayer(names[j]);
  }

  $("grid-img").addEventListener("click", (ev) => {
    const g = ns.grid;
    if (!g) return;
    const r = ev.target.getBoundingClientRect();
    const px = ((ev.clientX - r.left) / r.width) * g.width;
    const py = ((ev.clientY - r.top) / r.height) * g.height;
    const col = Math.floor((px - g.pad / 2) / (g.tile_w + g.pad));
    const row = Math.floor((py - g.pad / 2) / (g.tile_h + g.pad));
    if (col < 0 || row < 0 || col >= g.cols || row >= g.rows) return;
    const unit = row * g.cols + col;
    if (unit < g.channels) selectUnit(unit);
  });

  // ------------------------------------------------------------------ synthetic image and examples

  function loadUnitExtras() {
    clearTimeout(ns.synthTimer);
    const { layer, unit } = ns.state;
    $("synth-img").hidden = true;
    $("examples").replaceChildren();
    $("patches").replaceChildren();
    $("examples-note").hidden = true;
    $("synth-note").hidden = true;
    if (unit === null || unit === undefined) {
      $("synth-caption").textContent = "— select a unit";
      $("examples-caption").textContent = "— select a unit";
      return;
    }
    const q = `layer=${encodeURIComponent(layer)}&unit=${unit}`;
    pollSynth(q, layer, unit);
    fetch(`/api/examples?${q}`).then((r) => r.json()).then((d) => {
      if (ns.state.layer !== layer || ns.state.unit !== unit) return;
      if (d.status !== "ok") {
        $("examples-caption").textContent = "";
        $("examples-note").textContent = d.message || d.error;
        $("examples-note").hidden = false;
        return;
      }
      $("examples-caption").textContent = `— ${unitName(layer, unit)}`;
      for (const it of d.items) {
        const view = $("examples-view").value;
        const src = view === "images"
          ? `/api/examples/img?${q}&rank=${it.rank}&kind=image`
          : `/api/examples/backprop.jpg?${q}&rank=${it.rank}&mode=${view}&filter=${ns.state.bp_filter}`;
        $("examples").append(exampleTile(src, it.score, view === "images" ? it.caption : `${view} · ${it.caption}`));
        if (it.patch) $("patches").append(exampleTile(`/api/examples/img?${q}&rank=${it.rank}&kind=patch`, it.score, "max patch"));
      }
    }).catch(() => { $("examples-caption").textContent = "— could not load"; });
  }

  function exampleTile(src, score, caption) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = src;
    img.alt = caption || "dataset example";
    img.title = `${caption ? caption + " · " : ""}activation ${fmt(score)}`;
    fig.append(img);
    return fig;
  }

  function pollSynth(q, layer, unit) {
    fetch(`/api/synth?${q}`).then((r) => r.json()).then((d) => {
      if (ns.state.layer !== layer || ns.state.unit !== unit) return;
      const cap = $("synth-caption");
      if (d.status === "ready") {
        const img = $("synth-img");
        img.src = `/api/synth.png?${q}`;
        img.hidden = false;
        cap.textContent = `— ${unitName(layer, unit)}`;
      } else if (d.status === "queued" || d.status === "rendering" || d.status === "missing") {
        cap.textContent = d.status === "rendering" ? `— rendering ${Math.round((d.progress || 0) * 100)}%` : "— queued";
        ns.synthTimer = setTimeout(() => pollSynth(q, layer, unit), 1000);
      } else {
        cap.textContent = "";
        $("synth-note").textContent = d.message || d.error || d.status;
        $("synth-note").hidden = false;
      }
    }).catch(() => { $("synth-caption").textContent = "— could not load"; });
  }

  // ------------------------------------------------------------------ inputs

  async function handleFile(file) {
    if (!file) return;
    const videoName = /\.(mp4|m4v|webm|mkv|mov|ogv|ogg|avi)$/i.test(file.name);
    if (file.type.startsWith("video/") || (!file.type && videoName)) { startVideoFile(file); return; }
    const limit = ns.info ? ns.info.max_upload_bytes : 20 << 20;
    if (file.size > limit) {
      showMessage(`${file.name}: the file is ${(file.size / 1e6).toFixed(1)} MB; the limit is ${(limit / 1e6).toFixed(0)} MB`);
      return;
    }
    stopLive();
    ns.uploadName = file.name;
    const buffer = await file.arrayBuffer();
    ns.lastUpload = buffer;
    $("message").hidden = true;
    sendBytes(KIND_UPLOAD, buffer);
  }

  $("file-input").addEventListener("change", (ev) => { handleFile(ev.target.files[0]); ev.target.value = ""; });

  let dragDepth = 0;
  window.addEventListener("dragenter", (ev) => { ev.preventDefault(); dragDepth++; $("drop-overlay").hidden = false; });
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop-overlay").hidden = true; } });
  window.addEventListener("drop", (ev) => {
    ev.preventDefault();
    dragDepth = 0;
    $("drop-overlay").hidden = true;
    if (ev.dataTransfer.files.length) handleFile(ev.dataTransfer.files[0]);
  });

  async function startWebcam() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showMessage("this browser gives no webcam access here (it needs http://localhost or https)");
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
      stopLive();
      startLive({ kind: "webcam", stream }, (v) => { v.srcObject = stream; });
      $("input-caption").textContent = "— webcam";
    } catch (e) {
      showMessage(`webcam unavailable: ${e.message || e.name}`);
    }
  }

  function startVideoFile(file) {
    stopLive();
    const url = URL.createObjectURL(file);
    startLive({ kind: "video", url }, (v) => { v.src = url; v.loop = true; });
    $("input-caption").textContent = `— ${file.name}`;
  }

  function startLive(live, attach) {
    const v = $("live-video");
    attach(v);
    v.hidden = false;
    ns.live = live;
    ns.paused = false;
    ns.lastUpload = null;
    v.play().catch((e) => showMessage(`cannot play the video: ${e.message}`));
    v.onerror = () => { showMessage("this video cannot be decoded by the browser"); stopLive(); };
    watchFrames(v, live);
    $("stop-button").disabled = false;
    captureLoop();
  }

  function stopLive() {
    const live = ns.live;
    if (!live) return;
    ns.live = null;
    const v = $("live-video");
    v.pause();
    if (live.stream) live.stream.getTracks().forEach((t) => t.stop());
    if (live.url) URL.revokeObjectURL(live.url);
    v.removeAttribute("src");
    v.srcObject = null;
    v.hidden = true;
    $("stop-button").disabled = true;
  }

  // Only new video frames are sent: requestVideoFrameCallback marks them (where
  // the browser has it; otherwise a change of currentTime does).
  function watchFrames(v, live) {
    live.fresh = true;
    if (!v.requestVideoFrameCallback) return;
    live.rvfc = true;
    const mark = () => { if (ns.live === live) { live.fresh = true; v.requestVideoFrameCallback(mark); } };
    v.requestVideoFrameCallback(mark);
  }

  function captureLoop() {
    const live = ns.live;
    if (!live) return;
    const v = $("live-video");
    if (!live.rvfc && v.currentTime !== live.lastTime) { live.fresh = true; live.lastTime = v.currentTime; }
    const inFlight = ns.seq - ns.ackSeq;
    const stale = performance.now() - ns.lastSendTime > 2000;
    if (!ns.paused && live.fresh && v.readyState >= 2 && v.videoWidth && (inFlight < MAX_IN_FLIGHT || stale) && !ns.encoding) {
      live.fresh = false;
      ns.encoding = true;
      const size = ns.info ? ns.info.input_size : 224;
      const c = $("capture-canvas");
      if (c.width !== size) { c.width = size; c.height = size; }
      const ctx = c.getContext("2d");
      const w = v.videoWidth, h = v.videoHeight;
      if (ns.state.fit === "stretch") ctx.drawImage(v, 0, 0, size, size);
      else { const s = Math.min(w, h); ctx.drawImage(v, (w - s) / 2, (h - s) / 2, s, s, 0, 0, size, size); }
      c.toBlob((blob) => {
        ns.encoding = false;
        if (blob && ns.live === live) blob.arrayBuffer().then((buf) => { if (ns.live === live) sendBytes(KIND_FRAME, buf); });
      }, "image/jpeg", 0.85);
    }
    setTimeout(captureLoop, 5);
  }

  $("webcam-button").addEventListener("click", startWebcam);
  $("stop-button").addEventListener("click", stopLive);

  // ------------------------------------------------------------------ controls

  function syncControls() {
    if (ns.state.layer) $("layer-select").value = ns.state.layer;
    $("backprop-select").value = ns.state.backprop;
    $("filter-select").value = ns.state.bp_filter;
    $("fit-select").value = ns.state.fit;
    $("boost-select").value = String(ns.state.boost);
    $("gamma-select").value = String(ns.state.gamma);
    $("scale-select").value = ns.state.scale;
    $("contrast-select").value = ns.state.bp_contrast;
    $("grid-mode").value = ns.pattern ? "pattern" : ns.state.show_back ? "back" : "act";
  }

  function bindSelect(id, key, parse = (v) => v) {
    $(id).addEventListener("change", (ev) => {
      ns.state[key] = parse(ev.target.value);
      sendState({ [key]: ns.state[key] });
      ev.target.blur();
    });
  }
  $("layer-select").addEventListener("change", (ev) => { selectLayer(ev.target.value); ev.target.blur(); });
  bindSelect("backprop-select", "backprop");
  bindSelect("filter-select", "bp_filter");
  bindSelect("fit-select", "fit");
  bindSelect("boost-select", "boost", Number);
  bindSelect("gamma-select", "gamma", Number);
  bindSelect("scale-select", "scale");
  bindSelect("contrast-select", "bp_contrast");
  $("grid-mode").addEventListener("change", (ev) => { setGridMode(ev.target.value); ev.target.blur(); });
  $("all-layers").addEventListener("change", (ev) => { ns.allLayers = ev.target.checked; fillLayers(); ev.target.blur(); });
  $("freeze-button").addEventListener("click", (ev) => { toggleFreeze(); ev.target.blur(); });
  $("prev-input").addEventListener("click", (ev) => { stepInput(-1); ev.target.blur(); });
  $("next-input").addEventListener("click", (ev) => { stepInput(1); ev.target.blur(); });
  $("examples-view").addEventListener("change", (ev) => { loadUnitExtras(); ev.target.blur(); });
  for (const [id, mode] of [["pane-unit", "unit"], ["pane-backprop", "backprop"]]) {
    $(id).querySelector(".square").addEventListener("click", () => setZoom(ns.zoom === mode ? "off" : mode));
  }
  $("zoom-img").addEventListener("click", () => setZoom("off"));

  // ------------------------------------------------------------------ grid modes: activations, backprop diffs (a), patterns (s)

  function setGridMode(mode) {
    const back = mode === "back";
    ns.pattern = mode === "pattern";
    if (ns.state.show_back !== back) { ns.state.show_back = back; sendState({ show_back: back }); }
    if (back && ns.state.backprop === "off") { ns.state.backprop = "guided"; sendState({ backprop: "guided" }); }
    syncControls();
    if (ns.pattern) loadPatterns();
    else {
      clearTimeout(ns.patternTimer);
      if (ns.actGrid) ns.grid = ns.actGrid;
      if (ns.stats.lastHeader) sendState({}); // redraw the activation grid
    }
    $("pane-grid").dataset.kind = ns.pattern ? "patterns" : back ? "diffs" : "activations";
  }

  function loadPatterns() {
    clearTimeout(ns.patternTimer);
    const layer = ns.state.layer;
    if (!ns.pattern || !layer) return;
    fetch(`/api/patterns?layer=${encodeURIComponent(layer)}`).then((r) => r.json()).then((d) => {
      if (!ns.pattern || ns.state.layer !== layer) return;
      ns.patternStatus = d;
      if (d.status === "unavailable" || d.status === "failed" || d.error) {
        $("grid-caption").textContent = `patterns: ${d.message || d.error}`;
        return;
      }
      const img = $("grid-img");
      img.src = `/api/patterns.png?layer=${encodeURIComponent(layer)}&done=${d.done}`;
      img.hidden = false;
      $("grid-placeholder").hidden = true;
      ns.grid = d.geometry;
      fitGrid();
      drawHighlight();
      const how = d.source === "atlas" ? "from the atlas store" : `rendered ${d.size}px, ${d.steps} steps, cached`;
      $("grid-caption").textContent = d.status === "ready"
        ? `preferred patterns of ${d.total} units · ${how}`
        : `preferred patterns · ${d.done}/${d.total} ready · ${d.status} in the background (${how})`;
      if (d.status !== "ready") ns.patternTimer = setTimeout(loadPatterns, 1500);
    }).catch(() => { $("grid-caption").textContent = "patterns: could not load"; });
  }

  // ------------------------------------------------------------------ frozen backprop unit (d)

  function toggleFreeze() {
    const fz = ns.state.bp_frozen;
    const u = ns.state.unit;
    let next = null;
    if (!fz) {
      if (u === null || u === undefined) { showMessage("select a unit first: its backprop view then stays while you move on", "info", 4000); return; }
      next = [ns.state.layer, u];
      if (ns.state.backprop === "off") { ns.state.backprop = "guided"; sendState({ backprop: "guided" }); }
    }
    ns.state.bp_frozen = next;
    sendState({ bp_frozen: next });
    syncControls();
    drawHighlight();
  }

  // ------------------------------------------------------------------ the --inputs folder (n / p)

  function stepInput(delta) {
    const n = ns.info && ns.info.inputs ? ns.info.inputs.length : 0;
    if (!n) { showMessage("no input folder: start serve with --inputs DIR to step through images", "info", 5000); return; }
    const i = ns.inputIndex === null ? (delta > 0 ? 0 : n - 1) : (ns.inputIndex + delta + n) % n;
    showInput(i);
  }

  function showInput(i) {
    if (!ns.ws || ns.ws.readyState !== WebSocket.OPEN) return;
    stopLive();
    ns.lastUpload = null;
    ns.uploadName = null;
    ns.inputIndex = i;
    ns.ws.send(JSON.stringify({ type: "input", index: i }));
  }

  // ------------------------------------------------------------------ layer list: curated or all (l)

  function shownLayers() {
    if (!ns.info) return [];
    return ns.allLayers ? ns.info.layers : ns.info.layers.filter((l) => l.curated);
  }

  function fillLayers() {
    const sel = $("layer-select");
    const current = ns.state.layer;
    const list = shownLayers();
    sel.replaceChildren(...list.map((l) => {
      const o = document.createElement("option");
      o.value = l.name;
      o.textContent = `${l.name}  (${l.shape.join("×")})${l.name === "logits" && ns.info.class_labels ? " classes" : ""}`;
      return o;
    }));
    if (current && !list.some((l) => l.name === current)) {
      const o = document.createElement("option");
      o.value = current;
      o.textContent = current;
      sel.append(o);
    }
    if (current) sel.value = current;
  }

  function cycle(key, values, parse = (v) => v) {
    const cur = String(ns.state[key]);
    const next = values[(values.indexOf(cur) + 1) % values.length];
    ns.state[key] = parse(next);
    syncControls();
    sendState({ [key]: ns.state[key] });
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest && ev.target.closest("select, input, textarea")) return;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const g = ns.grid;
    const u = ns.state.unit;
    let handled = true;
    switch (ev.key) {
      case "ArrowRight": selectUnit(u === null || u === undefined ? 0 : u + 1); break;
      case "ArrowLeft": selectUnit(u === null || u === undefined ? 0 : u - 1); break;
      case "ArrowDown": selectUnit(u === null || u === undefined ? 0 : u + (g ? g.cols : 1)); break;
      case "ArrowUp": selectUnit(u === null || u === undefined ? 0 : u - (g ? g.cols : 1)); break;
      case "PageDown": case "]": stepLayer(1); break;
      case "PageUp": case "[": stepLayer(-1); break;
      case "b": cycle("backprop", BACKPROP_MODES); break;
      case "a": setGridMode(ns.state.show_back ? "act" : "back"); break;
      case "s": setGridMode(ns.pattern ? "act" : "pattern"); break;
      case "d": toggleFreeze(); break;
      case "z": setZoom(ZOOMS[(ZOOMS.indexOf(ns.zoom) + 1) % ZOOMS.length]); break;
      case "x": cycle("scale", SCALES); break;
      case "l": ns.allLayers = !ns.allLayers; $("all-layers").checked = ns.allLayers; fillLayers(); break;
      case "n": stepInput(1); break;
      case "p": stepInput(-1); break;
      case "f": cycle("bp_filter", FILTERS); break;
      case "c": cycle("fit", ["crop", "stretch"]); break;
      case "o": cycle("boost", BOOSTS, Number); break;
      case "g": cycle("gamma", GAMMAS, Number); break;
      case "w": if (ns.live && ns.live.kind === "webcam") stopLive(); else startWebcam(); break;
      case " ": if (ns.live) { ns.paused = !ns.paused; const v = $("live-video"); ns.paused ? v.pause() : v.play(); } break;
      case "Escape": selectUnit(null); break;
      default: handled = false;
    }
    if (handled) ev.preventDefault();
  });

  // ------------------------------------------------------------------ start

  async function start() {
    try {
      const info = await (await fetch("/api/info")).json();
      ns.info = info;
      $("model-name").textContent = `${info.model} · ${info.input_size}px`;
      ns.state.layer = info.default_layer;
      fillLayers();
      if (info.inputs && info.inputs.length) {
        $("inputs-group").hidden = false;
        $("input-name").textContent = `${info.inputs.length} images`;
      }
      $("layer-caption").textContent = info.default_layer;
      if (!info.backprop_available) $("backprop-caption").textContent = "off in this viewer (started without a backward view)";
    } catch (e) {
      showMessage(`cannot reach the server: ${e}`);
    }
    loadUnitExtras();
    connect();
    installGridHover();
  }

  // Hovering the grid names the unit under the pointer (class names for the logits).
  function installGridHover() {
    const img = $("grid-img");
    img.addEventListener("mousemove", (ev) => {
      const g = ns.grid;
      if (!g) return;
      const r = img.getBoundingClientRect();
      const x = ((ev.clientX - r.left) / r.width) * g.width, y = ((ev.clientY - r.top) / r.height) * g.height;
      const col = Math.floor((x - g.pad) / (g.tile_w + g.pad)), row = Math.floor((y - g.pad) / (g.tile_h + g.pad));
      const u = row * g.cols + col;
      img.title = col >= 0 && col < g.cols && u >= 0 && u < g.channels ? unitName(ns.state.layer, u) : "";
    });
  }
  start();
})();
