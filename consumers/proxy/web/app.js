// powerwall-bus power-flow page: live numbers from `events` (Server-Sent Events), or by
// polling `events/latest` (the same numbers, once) every 2 s when the stream is unavailable.
// The server sends the battery level already on the Tesla app's scale (`level`), so the
// gateway's scale is known in one place only. All URLs are relative, so the page works
// behind PROXY_BASE_URL.
(function () {
  "use strict";

  var POLL_MS = 2000;
  var RETRY_EVENTS_MS = 60000; // while polling, try the stream again this often
  var IDLE_W = 10; // below this, a line shows no flow
  var DASH_PERIOD = 16.1; // stroke-dasharray "0.1 16"

  var root = document.documentElement;
  var staleAfterMs = (Number(root.getAttribute("data-stale-after")) || 30) * 1000;
  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function $(id) { return document.getElementById(id); }

  // Each line's path runs from its node to the gateway; `sign` turns the meter's power
  // into "towards the gateway" (+1) or "away from it" (-1).
  var flows = {
    solar: { el: $("flow-solar"), sign: 1, dir: 0, speed: 0, offset: 0 },
    grid: { el: $("flow-grid"), sign: 1, dir: 0, speed: 0, offset: 0 },
    home: { el: $("flow-home"), sign: -1, dir: 0, speed: 0, offset: 0 },
    battery: { el: $("flow-battery"), sign: 1, dir: 0, speed: 0, offset: 0 }
  };

  var transport = "connecting"; // connecting | events | events-lost | polling | polling-failed
  var last = null; // the latest numbers
  var dataTime = 0; // performance.now() at which `last` was read by the poller

  // ------------------------------------------------------------------ formatting

  function isNum(v) { return typeof v === "number" && isFinite(v); }

  function kw(w) { return (Math.abs(w) / 1000).toFixed(2) + " kW"; }

  function gridState(v) {
    if (v === 1 || v === "SystemGridConnected") return "up";
    if (v === 0 || v === "SystemIslandedActive" || v === "SystemMicroGridFaulted" ||
        v === "SystemWaitForUser") return "down";
    if (typeof v === "string" && v.indexOf("Transition") >= 0) return "syncing";
    if (v === "SystemIslandedReady") return "syncing";
    return "unknown";
  }

  var GRID_TEXT = { up: "Grid connected", down: "OFF-GRID", syncing: "Grid syncing",
                    unknown: "Grid: unknown" };

  function words(key, w) {
    if (!isNum(w)) return "";
    var idle = Math.abs(w) < IDLE_W;
    switch (key) {
      case "solar": return idle ? "Idle" : (w > 0 ? "Producing" : "Consuming");
      case "grid": return idle ? "Idle" : (w > 0 ? "Importing" : "Exporting");
      case "battery": return idle ? "Standby" : (w > 0 ? "Discharging" : "Charging");
      default: return idle ? "Idle" : "Using";
    }
  }

  // ------------------------------------------------------------------ drawing

  function setPower(key, w) {
    var value = $(key + "-value");
    var state = $(key + "-state");
    var flow = flows[key];
    if (isNum(w)) {
      value.textContent = kw(w);
      value.setAttribute("data-w", String(w));
      state.textContent = words(key, w);
      var dir = Math.abs(w) < IDLE_W ? 0 : (w > 0 ? 1 : -1) * flow.sign;
      flow.dir = dir;
      // Faster with more power: 12 px/s at a trickle, 120 px/s from 10 kW up.
      flow.speed = 12 + 108 * Math.sqrt(Math.min(Math.abs(w), 10000) / 10000);
    } else {
      value.textContent = "--";
      value.setAttribute("data-w", "");
      state.textContent = "";
      flow.dir = 0;
      flow.speed = 0;
    }
    flow.el.setAttribute("data-flow", flow.dir > 0 ? "to-hub" : flow.dir < 0 ? "from-hub" : "none");
    flow.el.setAttribute("data-speed", flow.speed.toFixed(1));
  }

  function setLevel(level, soe) {
    var text = $("battery-level");
    var fill = $("battery-fill");
    if (isNum(level)) {
      text.textContent = Math.round(level) + "%";
      text.setAttribute("data-level", String(level));
      text.setAttribute("data-soe", isNum(soe) ? String(soe) : "");
      var h = 26 * Math.max(0, Math.min(100, level)) / 100;
      fill.setAttribute("height", h.toFixed(2));
      fill.setAttribute("y", (349 - h).toFixed(2));
    } else {
      text.textContent = "--%";
      text.setAttribute("data-level", "");
      text.setAttribute("data-soe", "");
      fill.setAttribute("height", "0");
    }
  }

  function setGrid(value) {
    var state = gridState(value);
    $("grid-badge").setAttribute("data-grid", state);
    root.setAttribute("data-grid", state);
    $("grid-status").textContent = GRID_TEXT[state];
  }

  function describe(d) {
    function part(name, w, key) {
      return isNum(w) ? name + " " + (words(key, w) || "").toLowerCase() + " " + kw(w) : name + " no data";
    }
    var level = isNum(d.level) ? " at " + Math.round(d.level) + " percent" : "";
    $("flow-desc").textContent = [
      part("Solar", d.solar, "solar"),
      part("Home", d.home, "home"),
      part("Grid", d.grid, "grid"),
      part("Powerwall", d.battery, "battery") + level,
      GRID_TEXT[gridState(d.grid_status)]
    ].join(", ") + ".";
  }

  function show(d) {
    setPower("solar", d.solar);
    setPower("grid", d.grid);
    setPower("home", d.home);
    setPower("battery", d.battery);
    setLevel(d.level, d.soe);
    setGrid(d.grid_status);
    describe(d);
    var when = d.time ? new Date(d.time) : new Date();
    $("updated").textContent = isNaN(when.getTime()) ? "" : "Updated " + when.toLocaleTimeString();
  }

  function receive(d, ageSeconds) {
    last = d;
    dataTime = performance.now() - (isNum(ageSeconds) ? ageSeconds * 1000 : 0);
    show(d);
    refreshStatus();
  }

  // ------------------------------------------------------------------ status

  var STATUS_TEXT = { connecting: "Connecting", live: "Live", polling: "Live (polling)",
                      reconnecting: "Reconnecting", stale: "Stale data", nodata: "No data",
                      offline: "No connection" };

  function hasData(d) {
    return d !== null && (isNum(d.grid) || isNum(d.home) || isNum(d.solar) || isNum(d.battery));
  }

  function refreshStatus() {
    var status;
    if (transport === "connecting") status = "connecting";
    else if (transport === "events-lost") status = "reconnecting";
    else if (transport === "polling-failed") status = "offline";
    else if (!hasData(last)) status = "nodata";
    else if (performance.now() - dataTime > staleAfterMs) status = "stale";
    else status = transport === "polling" ? "polling" : "live";
    root.setAttribute("data-conn", status);
    $("conn").setAttribute("data-conn", status);
    $("conn-status").textContent = STATUS_TEXT[status];
  }

  // ------------------------------------------------------------------ data sources

  var polling = false;
  var pollStarted = 0;

  function startEvents() {
    if (!window.EventSource) { startPolling(); return; }
    root.setAttribute("data-source", "events");
    var opened = false;
    var failures = 0;
    var source = new EventSource("events");
    source.onopen = function () {
      opened = true;
      failures = 0;
      transport = "events";
      refreshStatus();
    };
    source.onmessage = function (event) {
      var d;
      try { d = JSON.parse(event.data); } catch (e) { return; }
      transport = "events";
      receive(d, d.age);
    };
    source.onerror = function () {
      failures += 1;
      // Refused (503, 404, ...) or never working: poll instead. A dropped stream is
      // reconnected by the browser; after three failed attempts we poll.
      if (source.readyState === EventSource.CLOSED || !opened || failures >= 3) {
        source.close();
        startPolling();
      } else {
        transport = "events-lost";
        refreshStatus();
      }
    };
  }

  function poll() {
    fetch("events/latest", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (d) {
        if (!d || typeof d !== "object") throw new Error("not a JSON object");
        transport = "polling";
        receive(d, d.age);
      })
      .catch(function () {
        transport = "polling-failed";
        refreshStatus();
      })
      .then(function () {
        if (window.EventSource && performance.now() - pollStarted > RETRY_EVENTS_MS) {
          polling = false;
          startEvents();
        } else {
          window.setTimeout(poll, POLL_MS);
        }
      });
  }

  function startPolling() {
    if (polling) return;
    polling = true;
    root.setAttribute("data-source", "polling");
    pollStarted = performance.now();
    poll();
  }

  // ------------------------------------------------------------------ animation

  var before = null;
  function animate(now) {
    var dt = before === null ? 0 : Math.min(0.1, (now - before) / 1000);
    before = now;
    for (var key in flows) {
      var f = flows[key];
      if (f.dir === 0) continue;
      f.offset = (f.offset - f.dir * f.speed * dt) % DASH_PERIOD;
      f.el.style.strokeDashoffset = f.offset.toFixed(2);
    }
    window.requestAnimationFrame(animate);
  }

  if (!reduceMotion) window.requestAnimationFrame(animate);
  window.setInterval(refreshStatus, 1000);
  refreshStatus();
  startEvents();
})();
