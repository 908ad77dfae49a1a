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
  const MAX_IN_FLIGHT = 2;

  const ns = {
    info: null,
    state: { layer: null, unit: null, backprop: "off", bp_filter: "raw", fit: "crop", boost: 0, gamma: 1 },
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

    setPicture("grid-img", blobs.grid);
    setPicture("input-img", blobs.input);
    $("grid-placeholder").hidden = true;
    $("input-placeholder").hidden = true;
    ns.grid = header.grid;
    fitGrid();
    ns.state.layer = header.layer;
    $("layer-caption").textContent = header.layer;
    $("grid-caption").textContent =
      `${header.shape.join("×")} · ${header.grid.channels} channels · range ${fmt(header.range[0])}…${fmt(header.range[1])}`;
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
    }
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
    $("unit-caption").textContent = `${header.layer}:${u.index} · max ${fmt(u.max)} at (${x}, ${y}) · mean ${fmt(u.mean)}`;
    $("unit-caption").parentElement.title = $("unit-caption").textContent;
  }

  function drawBackprop(bp, blob) {
    const cap = $("backprop-caption");
    if (bp.status === "ok") {
      setPicture("backprop-img", blob);
      cap.textContent = `${bp.mode} · ${bp.filter === "normblur" ? "norm+blur" : bp.filter}`;
      return;
    }
    $("backprop-img").hidden = true;
    cap.textContent = bp.status === "off" ? "off — press b" : bp.message || bp.status;
    $("pane-backprop").dataset.status = bp.status;
  }

  function drawHighlight() {
    const hl = $("grid-highlight");
    const g = ns.grid, u = ns.state.unit;
    if (!g || u === null || u === undefined || u >= g.channels) { hl.hidden = true; return; }
    const col = u % g.cols, row = Math.floor(u / g.cols);
    const x = g.pad + col * (g.tile_w + g.pad), y = g.pad + row * (g.tile_h + g.pad);
    hl.style.left = `${(x / g.width) * 100}%`;
    hl.style.top = `${(y / g.height) * 100}%`;
    hl.style.width = `${(g.tile_w / g.width) * 100}%`;
    hl.style.height = `${(g.tile_h / g.height) * 100}%`;
    hl.hidden = false;
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
    $("layer-select").value = name;
    sendState({ layer: name });
    drawHighlight();
    loadUnitExtras();
  }

  const layerInfo = (name) => ns.info && ns.info.layers.find((l) => l.name === name);

  function stepLayer(delta) {
    const names = ns.info.layers.map((l) => l.name);
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
      $("examples-caption").textContent = `— ${layer}:${unit}`;
      for (const it of d.items) {
        $("examples").append(exampleTile(`/api/examples/img?${q}&rank=${it.rank}&kind=image`, it.score, it.caption));
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
        cap.textContent = `— ${layer}:${unit}`;
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
      const sel = $("layer-select");
      for (const l of info.layers) {
        const o = document.createElement("option");
        o.value = l.name;
        o.textContent = `${l.name}  (${l.shape.join("×")})`;
        sel.append(o);
      }
      ns.state.layer = info.default_layer;
      sel.value = info.default_layer;
      $("layer-caption").textContent = info.default_layer;
      if (!info.backprop_available) $("backprop-caption").textContent = "unavailable in this version";
    } catch (e) {
      showMessage(`cannot reach the server: ${e}`);
    }
    loadUnitExtras();
    connect();
  }
  start();
})();
