// The onepane console: one page, hash routes, the public API only.
// Everything from the API is put into the page as text (textContent), never as HTML.

const main = document.getElementById("main");
const TOKEN_KEY = "onepane-token";
let stopPage = () => {};

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v);
  }
  for (const c of children.flat()) el.append(c instanceof Node ? c : String(c ?? ""));
  return el;
}

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  if (opts.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...opts, headers, body: opts.body && JSON.stringify(opts.body) });
  if (r.status === 401) { showLogin(); throw new Error("not logged in"); }
  const data = r.status === 204 ? null : await r.json();
  if (!r.ok) throw new Error(data?.detail || r.statusText);
  return data;
}

function table(columns, rows, rowAttrs = () => ({})) {
  return h("table", {}, h("thead", {}, h("tr", {}, columns.map(c => h("th", {}, c.title)))),
    h("tbody", {}, rows.map(r => h("tr", rowAttrs(r), columns.map(c => h("td", {}, c.cell(r)))))));
}

const stateClass = s => ({ running: "ok", ok: "ok", stopped: "warning", suspended: "warning", pending: "warning" }[s] || "bad");
const badge = s => h("span", { class: stateClass(s) }, s);
const ready = () => main.setAttribute("data-ready", location.hash || "#/overview");

// ---- login ------------------------------------------------------------------------------------

function showLogin() {
  stopPage();
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  main.replaceChildren(document.getElementById("login").content.cloneNode(true));
  document.getElementById("login-form").addEventListener("submit", async e => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    try { await api("/v1/locations"); route(); }
    catch (err) { document.getElementById("login-error").textContent = "That token was refused."; }
  });
}

document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY); showLogin();
});

// ---- overview ---------------------------------------------------------------------------------

async function overview() {
  const [locs, summary, deps] = await Promise.all([
    api("/v1/locations"), api("/v1/inventory/summary"), api("/v1/deployments")]);
  const problems = l => (l.status !== "ok" ? 2 : 0) + ((summary[l.name]?.error || 0) + (summary[l.name]?.missing || 0) ? 1 : 0);
  locs.sort((a, b) => problems(b) - problems(a) || a.name.localeCompare(b.name));
  const total = s => Object.values(s || {}).reduce((a, b) => a + b, 0);
  main.replaceChildren(
    h("h2", {}, "Overview"),
    h("div", { class: "grid" }, locs.map(l => h("div", { class: "card location", "data-location": l.name },
      h("h3", {}, l.name, " ", badge(l.status)),
      h("div", {}, `${l.provider}${l.driver ? " / " + l.driver : ""} · ${l.region}`),
      h("div", {}, Object.entries(l.labels).map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`))),
      h("div", {}, `${total(summary[l.name])} instances: `,
        Object.entries(summary[l.name] || {}).map(([s, n]) => h("span", { class: "pill " + stateClass(s) }, `${n} ${s}`))),
      l.status_detail ? h("div", { class: "error" }, l.status_detail) : "",
    ))),
    h("h3", {}, "Deployments"),
    table([
      { title: "name", cell: d => h("a", { href: `#/deployments/${d.name}` }, d.name) },
      { title: "primary", cell: d => d.primary || "" },
      { title: "health", cell: d => Object.entries(d.status.locations || {}).map(([l, v]) =>
          h("span", { class: "pill " + (v.up ? "ok" : "bad") }, `${l} ${v.healthy}/${v.replicas}`)) },
      { title: "availability", cell: d => !d.status.sla ? "" : d.status.sla.measuring
          ? h("span", { title: "warm-up: availability counts once the deployment first serves" }, "measuring")
          : h("span", { class: d.status.sla.violated ? "bad" : "ok" },
            `${d.status.sla.availability}% of ${d.status.sla.target}%`) },
    ], deps));
  ready();
}

// ---- inventory --------------------------------------------------------------------------------

async function inventory() {
  const locsP = api("/v1/locations");  // for the filter only: do not wait for it to list
  const f = { location: "", state: "", name: "" };
  const body = h("div");
  const select = (key, options) => h("select", { id: `filter-${key}`, onchange: e => { f[key] = e.target.value; load(); } },
    h("option", { value: "" }, `all ${key}s`), options.map(o => h("option", { value: o }, o)));
  const locSelect = select("location", []);
  locsP.then(locs => locSelect.append(...locs.map(l => h("option", { value: l.name }, l.name))));
  main.replaceChildren(h("h2", {}, "Inventory"),
    h("div", { class: "filters" },
      locSelect,
      select("state", ["running", "stopped", "suspended", "pending", "error", "missing"]),
      h("input", { id: "filter-name", placeholder: "search names", oninput: e => { f.name = e.target.value; load(); } })),
    body);

  async function act(inst, action) {
    if (!confirm(`${action} ${inst.name} (${inst.id}) at ${inst.location}?`)) return;
    const job = action === "destroy"
      ? await api(`/v1/instances/${inst.id}`, { method: "DELETE" })
      : await api(`/v1/instances/${inst.id}/${action}`, { method: "POST" });
    for (let i = 0; i < 100; i++) {
      const j = await api(`/v1/jobs/${job.id}`);
      if (j.status === "succeeded" || j.status === "failed") break;
      await new Promise(r => setTimeout(r, 100));
    }
    load();
  }

  const columns = [
    { title: "name", cell: i => i.name }, { title: "id", cell: i => i.id },
    { title: "location", cell: i => i.location }, { title: "provider", cell: i => i.provider },
    { title: "state", cell: i => badge(i.state) }, { title: "image", cell: i => i.image },
    { title: "size", cell: i => i.size },
    { title: "address", cell: i => `${i.addresses[0] || ""}${i.ports.app ? ":" + i.ports.app : ""}` },
    { title: "", cell: i => ["start", "stop", "reboot", "destroy"].map(a =>
        h("button", { "data-action": a, onclick: () => act(i, a) }, a)) },
  ];
  const rowAttrs = i => ({ "data-instance": i.id, "data-location": i.location });
  let seq = 0;
  async function load() {
    const mine = ++seq;
    const q = new URLSearchParams({ limit: "50" });  // a page at a time keeps rendering fast
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    const extras = Promise.all([api("/v1/volumes?limit=200"), api("/v1/networks?limit=200")]);
    const page = await api(`/v1/instances?${q}`);
    if (mine !== seq) return;
    const instances = table(columns, page.items, rowAttrs);
    const more = h("p");
    let cursor = page.next_cursor;
    const addMore = () => {
      more.replaceChildren(cursor ? h("button", { id: "more", onclick: async () => {
        q.set("cursor", cursor);
        const next = await api(`/v1/instances?${q}`);
        instances.tBodies[0].append(...next.items.map(i => h("tr", rowAttrs(i), columns.map(c => h("td", {}, c.cell(i))))));
        cursor = next.next_cursor;
        addMore();
      } }, "Load more") : "");
    };
    addMore();
    const below = h("div");
    body.replaceChildren(instances, more, below);
    ready();  // the instances are on screen; volumes and networks follow below them
    const [vols, nets] = await extras;
    if (mine !== seq) return;
    below.replaceChildren(
      h("h3", {}, "Volumes"),
      table([{ title: "name", cell: v => v.name }, { title: "location", cell: v => v.location },
        { title: "size", cell: v => `${v.size_gb} GB` }, { title: "state", cell: v => v.state },
        { title: "attached to", cell: v => v.attached_to || "" }], vols.items),
      h("h3", {}, "Networks"),
      table([{ title: "name", cell: n => n.name }, { title: "location", cell: n => n.location },
        { title: "cidr", cell: n => n.cidr || "" }, { title: "state", cell: n => n.state }], nets.items));
  }
  await load();
}

// ---- deployments ------------------------------------------------------------------------------

async function deployments(name) {
  const deps = await api("/v1/deployments");
  if (!name && deps.length) name = deps[0].name;
  const top = h("div"), timeline = h("div");
  const rateBox = h("div", { id: "chart-rate" }), latBox = h("div", { id: "chart-latency" }),
    healthBox = h("div", { id: "chart-health" }), replicasBox = h("div", { id: "replicas" });
  main.replaceChildren(h("h2", {}, "Deployments"),
    h("div", { class: "filters" }, deps.map(d => h("a", { class: "pill", href: `#/deployments/${d.name}` }, d.name))),
    top);
  if (!name) { top.append("No deployments yet: onepane deployments apply -f spec.yaml"); ready(); return; }
  main.append(h("div", { class: "card" }, h("h3", {}, "Replicas (live, from the metrics the policies read)"),
      replicasBox),
    h("div", { class: "card" }, h("h3", {}, "Requests per second, by location"), rateBox,
      h("h3", {}, "Latency through the data plane (ms)"), latBox,
      h("h3", {}, "Healthy replicas"), healthBox),
    timeline);

  let current = null;
  async function render() {
    const subject = encodeURIComponent(name);
    const [d, moves, decisions, phases, locations] = await Promise.all([api(`/v1/deployments/${name}`),
      api(`/v1/events?subject=${subject}&kind=traffic.&limit=1000`),
      api(`/v1/events?subject=${subject}&kind=policy.&limit=1000`),
      api(`/v1/events?subject=${subject}&kind=move.&limit=1000`), api("/v1/locations")]);
    const evs = { items: [...moves.items, ...decisions.items, ...phases.items].sort((a, b) => a.id - b.id) };
    // Live moves: offered when the primary can move a running VM, to locations of its kind.
    const byName = Object.fromEntries(locations.map(l => [l.name, l]));
    const here = byName[d.primary];
    const targets = here && here.capabilities.live_migration ? locations.filter(l =>
      l.name !== d.primary && l.provider === here.provider && l.capabilities.live_migration) : [];
    const liveTo = h("select", { id: "live-to" }, targets.map(l => h("option", { value: l.name }, l.name)));
    const liveMove = async () => {
      const to = liveTo.value;
      if (!confirm(`Move ${name}'s running VM from ${d.primary} to ${to}? Its memory, disk, address and open connections move with it.`)) return;
      try {
        const started = await api(`/v1/deployments/${name}/move`, { method: "POST", body: { to, live: true } });
        for (const job of started.jobs) {
          for (;;) {
            const j = await api(`/v1/jobs/${job.id}`);
            if (j.status === "failed") throw new Error(j.error.detail);
            if (j.status === "succeeded") break;
            await new Promise(r => setTimeout(r, 250));
          }
        }
      } catch (err) { alert(err.message); }
      render();
    };
    current = d;
    const locs = d.status.locations || {};
    const act = (path, body, question) => async () => {
      if (!confirm(question)) return;
      try { await api(`/v1/deployments/${name}/${path}`, { method: "POST", body }); }
      catch (err) { alert(err.message); }
      render();
    };
    top.replaceChildren(h("div", { class: "card" },
      h("h3", {}, name, " · primary ", h("span", { id: "primary", class: "ok" }, d.primary || "none")),
      h("div", {}, `${d.spec.traffic.mode} · listening on ${d.listen} · data plane ${d.spec.data_plane} · serving `,
        h("strong", { id: "serving" }, (d.status.serving || []).join(", "))),
      table([
        { title: "location", cell: ([l]) => l },
        { title: "healthy / replicas", cell: ([, v]) => `${v.healthy} / ${v.replicas}` +
            (v.desired !== undefined && v.desired !== v.replicas ? ` (want ${v.desired})` : "") },
        { title: "state", cell: ([, v]) => badge(v.up ? "ok" : "down") },
        { title: "traffic", cell: ([l]) => String((d.status.weights || {})[l] ?? (l === d.primary ? "all" : "standby")) },
        { title: "", cell: ([l, v]) => l === d.primary ? "" : h("button", { "data-move": l, disabled: !v.up,
            onclick: act("move", { to: l }, `Move ${name} to ${l}?`) }, `Move to ${l}`) },
      ], Object.entries(locs)),
      d.status.sla && d.status.sla.measuring ? h("p", { id: "sla" },
        `SLA: measuring (warm-up, target ${d.status.sla.target}%)`) :
      d.status.sla ? h("p", { id: "sla", class: d.status.sla.violated ? "bad" : "ok" },
        `SLA: availability ${d.status.sla.availability}% (target ${d.status.sla.target}%) · `,
        d.status.sla.error_budget.remaining_pct < 0 ? "error budget exhausted " :
          `error budget left ${d.status.sla.error_budget.remaining_pct}% `,
        `(${d.status.sla.error_budget.used_down_s} s down of ${d.status.sla.error_budget.allowed_down_s} s allowed)`) : "",
      h("p", {}, h("button", { id: "failover", onclick: act("failover", undefined,
        `Fail ${name} over to the next healthy location?`) }, "Fail over now"),
        targets.length ? h("span", {}, " · live move the running VM to ", liveTo, " ",
          h("button", { id: "live-move", onclick: liveMove }, "Move live")) : "")));
    timeline.replaceChildren(h("div", { class: "card" }, h("h3", {}, "Failovers, moves and policy decisions"),
      h("ul", { class: "timeline", id: "timeline" }, evs.items.slice().reverse().map(e =>
        h("li", { "data-kind": e.kind }, `${e.ts.replace("T", " ").slice(0, 19)} · ${e.message}`)))));
    ready();
  }

  // Charts: sampled once a second from the data plane's counters while the page is open.
  const samples = [];
  const charts = {};
  const colors = ["#1f6feb", "#d97706", "#16a34a", "#db2777"];
  function plot(key, box, labels, data) {
    if (!window.uPlot || !data[0].length) return;
    const opts = { width: Math.min(900, main.clientWidth - 40), height: 150,
      series: [{}, ...labels.map((l, i) => ({ label: l, stroke: colors[i % 4] }))] };
    if (!charts[key] || charts[key].series.length !== labels.length + 1) {
      box.replaceChildren();
      charts[key] = new uPlot(opts, data, box);
    } else charts[key].setData(data);
  }
  async function replicas() {
    const m = await api(`/v1/deployments/${name}/metrics?since=60&name=up`).catch(() => ({}));
    const live = m.live;
    if (!live) return;
    const fmt = (v, digits, unit = "") => v === undefined || v === null ? "—" : `${v.toFixed(digits)}${unit}`;
    replicasBox.replaceChildren(table([
      { title: "instance", cell: ([id]) => id },
      { title: "location", cell: ([, loc]) => loc },
      { title: "health", cell: ([id]) => badge(live.up[id] ? "ok" : "down") },
      { title: "check", cell: ([id]) => fmt(live.check_ms[id], 1, " ms") },
      { title: "CPU", cell: ([id]) => fmt(live.cpu[id], 1, " %") },
      { title: "memory", cell: ([id]) => live.memory[id] === undefined ? "—" : `${(live.memory[id] / 2 ** 20).toFixed(0)} MiB` },
    ], Object.entries(live.location_of), ([id]) => ({ "data-instance": id })));
  }
  async function sample() {
    replicas();
    const t = await api(`/v1/deployments/${name}/traffic`).catch(() => ({}));
    if (!current || !t.ts) return;
    samples.push({ t, health: current.status.locations || {} });
    if (samples.length > 300) samples.shift();
    const locs = Object.keys(current.status.locations || {});
    const xs = [], rate = locs.map(() => []), lat = [], health = locs.map(() => []);
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1].t, b = samples[i].t, dt = Math.max(0.001, b.ts - a.ts);
      xs.push(b.ts);
      locs.forEach((l, j) => {
        rate[j].push(Math.max(0, ((b.by_location || {})[l] || 0) - ((a.by_location || {})[l] || 0)) / dt);
        health[j].push(samples[i].health[l]?.healthy ?? 0);
      });
      lat.push(b.p50_ms ?? null);
    }
    plot("rate", rateBox, locs, [xs, ...rate]);
    plot("lat", latBox, ["p50"], [xs, lat]);
    plot("health", healthBox, locs, [xs, ...health]);
  }
  await render();
  const timer = setInterval(() => { sample(); }, 1000);
  sample();
  // live: every traffic or health event for this deployment redraws the page
  const unfollow = follow(ev => { if (ev.subject === name) render(); });
  stopPage = () => { clearInterval(timer); unfollow(); };
}

// ---- images -----------------------------------------------------------------------------------

async function images() {
  const [locs, catalog] = await Promise.all([api("/v1/locations"), api("/v1/catalog")]);
  main.replaceChildren(h("h2", {}, "Images"), h("h3", {}, "Catalog"),
    catalog.length ? table([
      { title: "name", cell: i => `${i.name} ${i.version}` }, { title: "id", cell: i => i.id },
      { title: "os", cell: i => i.os || "" }, { title: "hardware", cell: i => `${i.cpus} CPU, ${i.memory_mb} MB` },
      { title: "disks", cell: i => i.disks.map(d => `${d.format} ${Math.round(d.virtual_size / 2 ** 20)} MiB`).join(", ") },
      { title: "replicas", cell: i => i.replicas.map(r => h("span", {
          class: "pill " + (r.state === "ready" ? "ok" : r.state === "failed" ? "bad" : "warning"),
          title: r.error || r.provider_image_id || "", "data-replica": `${r.location}:${r.state}` },
          `${r.location} ${r.state}${r.state === "ready" || r.state === "failed" ? "" : " " + r.progress + "%"}`)) },
    ], catalog) : h("p", {}, "No images yet: onepane images import FILE --name NAME"));
  const lists = await Promise.all(locs.map(l =>
    api(`/v1/images?location=${encodeURIComponent(l.name)}&limit=50`).catch(e => ({ error: e.message }))));
  locs.forEach((l, i) => main.append(h("div", { class: "card" }, h("h3", {}, `At ${l.name}`),
    lists[i].error ? h("p", { class: "error" }, lists[i].error)
      : table([{ title: "id", cell: im => im.id }, { title: "name", cell: im => im.name },
               { title: "kind", cell: im => im.extra.kind || "" }], lists[i]))));
  ready();
  // replication progress: refresh while anything is still moving
  if (catalog.some(i => i.replicas.some(r => !["ready", "failed"].includes(r.state)))) {
    const t = setTimeout(() => { if (location.hash.startsWith("#/images")) route(); }, 1000);
    stopPage = () => clearTimeout(t);
  }
}

// ---- events -----------------------------------------------------------------------------------

async function events() {
  // Filters the server applies (kind prefix, severity, time range) and paging back in time:
  // the newest 100 first, "Older" for the 100 before them.
  const state = { kind: "", severity: "", range: "", oldest: null };
  const tbody = h("tbody", { id: "events-feed" });
  const row = e => h("tr", { "data-kind": e.kind, "data-severity": e.severity },
    h("td", {}, e.ts.replace("T", " ").slice(0, 19) + "Z"),
    h("td", { class: e.severity }, e.severity), h("td", {}, e.kind), h("td", {}, e.location || ""),
    h("td", {}, e.subject || ""), h("td", {}, e.message));
  const older = h("button", { id: "events-older", onclick: () => load(true) }, "Older");
  function query(before) {
    const q = new URLSearchParams({ limit: "100", before: String(before) });
    if (state.kind) q.set("kind", state.kind);
    if (state.severity) q.set("severity", state.severity);
    if (state.range) q.set("since", new Date(Date.now() - Number(state.range) * 1000).toISOString());
    return `/v1/events?${q}`;
  }
  async function load(more = false) {
    const page = await api(query(more && state.oldest ? state.oldest : 2 ** 53));
    const rows = page.items.slice().reverse().map(row);  // newest on top
    if (more) tbody.append(...rows); else tbody.replaceChildren(...rows);
    state.oldest = page.items.length ? page.items[0].id : state.oldest;
    older.disabled = !page.next_cursor;
  }
  const matches = e => (!state.kind || e.kind.startsWith(state.kind))
    && (!state.severity || state.severity.split(",").includes(e.severity));
  main.replaceChildren(h("h2", {}, "Events ", h("small", { id: "live" }, "(live)")),
    h("div", { class: "filters" },
      h("input", { id: "event-filter", placeholder: "kind prefix, e.g. traffic.",
        oninput: e => { state.kind = e.target.value; load(); } }),
      h("select", { id: "event-severity", onchange: e => { state.severity = e.target.value; load(); } },
        ...[["", "any severity"], ["warning,error", "warnings and errors"], ["error", "errors"]]
          .map(([v, t]) => h("option", { value: v }, t))),
      h("select", { id: "event-range", onchange: e => { state.range = e.target.value; load(); } },
        ...[["", "all time"], ["900", "last 15 min"], ["3600", "last hour"], ["86400", "last 24 h"],
            ["604800", "last 7 days"]].map(([v, t]) => h("option", { value: v }, t)))),
    h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {},
      ["time (UTC)", "severity", "kind", "location", "subject", "message"].map(t => h("th", {}, t)))), tbody)),
    older);
  await load();
  stopPage = follow(e => { if (matches(e)) { const r = row(e); r.className = "new"; tbody.prepend(r); } });
  ready();
}

// Server-sent events read through fetch, so that the token travels in a header.
function follow(onEvent) {
  const ctrl = new AbortController();
  (async () => {
    while (!ctrl.signal.aborted) {
      try {
        const r = await fetch("/v1/events/stream", { signal: ctrl.signal,
          headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` } });
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
            const data = chunk.split("\n").find(l => l.startsWith("data: "));
            if (data) onEvent(JSON.parse(data.slice(6)));
          }
        }
      } catch (err) { if (ctrl.signal.aborted) return; }
      await new Promise(r => setTimeout(r, 1000));
    }
  })();
  return () => ctrl.abort();
}

// ---- routing ----------------------------------------------------------------------------------

const pages = { overview, inventory, deployments, images, events };

async function route() {
  stopPage(); stopPage = () => {};
  main.removeAttribute("data-ready");
  if (!sessionStorage.getItem(TOKEN_KEY)) { showLogin(); return; }
  document.getElementById("logout").hidden = false;
  api("/v1/whoami").then(me => {
    document.getElementById("who").textContent = `${me.name} · ${me.role}`;
  }).catch(() => {});
  const [, page = "overview", arg] = (location.hash || "#/overview").split("/");
  document.querySelectorAll("nav a").forEach(a => a.classList.toggle("active", a.hash === `#/${page}`));
  try { await (pages[page] || overview)(arg && decodeURIComponent(arg)); }
  catch (err) { if (err.message !== "not logged in") main.replaceChildren(h("p", { class: "error" }, err.message)); }
}

window.addEventListener("hashchange", route);
route();
