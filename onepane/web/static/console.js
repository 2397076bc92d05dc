// The onepane console: one page, hash routes, the public API only.
// Everything from the API is put into the page as text (textContent), never as HTML.

const main = document.getElementById("main");
const TOKEN_KEY = "onepane-token";
let stopPage = () => {};
let routeGen = 0;  // which navigation is current: a page whose data arrives late draws nothing

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
  let body = opts.body && JSON.stringify(opts.body);
  if (opts.body) headers["Content-Type"] = "application/json";
  if (opts.yaml !== undefined) { headers["Content-Type"] = "application/yaml"; body = opts.yaml; }
  const r = await fetch(path, { ...opts, headers, body });
  if (r.status === 401) { showLogin(); throw new Error("not logged in"); }
  const data = r.status === 204 ? null : await r.json();
  if (!r.ok) { const e = new Error(data?.detail || r.statusText); e.problem = data; throw e; }
  return data;
}

async function waitJob(job) {
  for (let i = 0; i < 600; i++) {
    const j = await api(`/v1/jobs/${job.id}`);
    if (j.status === "succeeded") return j;
    if (j.status === "failed") throw new Error(j.error?.detail || "failed");
    await new Promise(r => setTimeout(r, 100));
  }
  return job;
}

// Start, stop, reboot, resume or destroy an instance, once confirmed; resolves when its job has
// ended (false: not confirmed), rejects with the job's reason when it failed.
async function instanceAction(inst, action) {
  if (!confirm(`${action} ${inst.name} (${inst.id}) at ${inst.location}?`)) return false;
  const path = `/v1/instances/${encodeURIComponent(inst.id)}`;
  await waitJob(action === "destroy" ? await api(path, { method: "DELETE" })
    : await api(`${path}/${action}`, { method: "POST" }));
  return true;
}

// Every input has a visible label (a screen reader names it by it too).
const field = (text, input) => h("label", { class: "field" }, h("span", {}, text), input);

// Each cell carries its column's name (data-label): on a narrow screen a row is a card of
// labelled lines, so its actions stay on screen. `wrap`: a free-text column that wraps.
function table(columns, rows, rowAttrs = () => ({})) {
  const cell = (c, r) => h("td", { "data-label": typeof c.title === "string" ? c.title : "",
    class: c.wrap ? "wrap" : null }, c.cell(r));
  return h("table", {}, h("thead", {}, h("tr", {}, columns.map(c => h("th", {}, c.title)))),
    h("tbody", {}, rows.map(r => h("tr", rowAttrs(r), columns.map(c => cell(c, r))))));
}

// Only what makes sense now: a running instance is not started, a stopped one not stopped.
const ACTIONS_BY_STATE = { running: ["stop", "reboot", "destroy"], stopped: ["start", "destroy"],
  suspended: ["resume", "stop", "destroy"], error: ["start", "destroy"], pending: ["destroy"],
  missing: ["destroy"], rebooting: ["destroy"] };
const stateClass = s => ({ running: "ok", ok: "ok", stopped: "warning", suspended: "warning", pending: "warning" }[s] || "bad");
const badge = s => h("span", { class: stateClass(s) }, s);
const stale = gen => gen !== routeGen;
// Chart time axes: whole seconds and up (uPlot's own ticks read ":18.500" on a live minute),
// in UTC; a tick says as much as its span needs.
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const DASHES = [[], [8, 4], [2, 3], [12, 3, 2, 3]];
function chartTime(t, span) {
  const iso = new Date(t * 1000).toISOString();  // always UTC
  return span > 2 * 86400 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}`
    : span > 600 ? iso.slice(11, 16) : iso.slice(11, 19);
}
window.onepaneCharts = { chartTime, TIME_STEPS, DASHES };  // for the console's tests
// One wording of a deployment's SLA everywhere (tables, its page, the alerts): below its SLA
// is said as such even during a warm-up after a restart, which only pauses the measuring.
const slaText = window.onepaneSlaText = sla => sla.violated ? `below SLA: ${sla.availability}% of ${sla.target}%`
  : sla.measuring ? "measuring (warm-up)" : `${sla.availability}% of ${sla.target}%`;
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

// The traffic map: every location a node (state, instances, labels), every deployment a row
// whose lines go to its locations: solid and thick where it is served, dashed to standbys.
// It follows the event stream: a failover or a move redraws it as it happens.
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const MAP_ROWS = 40;  // beyond this a map is neither readable nor quick to paint: the table has all

// Deployments that need a look first (some location down), then by name.
const trouble = d => Object.values(d.status.locations || {}).some(v => !v.up) ? 0 : 1;

function trafficMap(locs, summary, allDeps) {
  const deps = allDeps.length <= MAP_ROWS ? allDeps
    : allDeps.slice().sort((a, b) => trouble(a) - trouble(b) || a.name.localeCompare(b.name)).slice(0, MAP_ROWS);
  const w = 170 + Math.max(2, locs.length) * 150, rowH = 44;
  const hgt = 110 + Math.max(1, deps.length) * rowH;
  const pos = Object.fromEntries(locs.map((l, i) => [l.name, 170 + 75 + i * 150]));
  const svg = s("svg", { id: "traffic-map", viewBox: `0 0 ${w} ${hgt}`, role: "img",
    style: `max-width: ${w}px`,
    "aria-label": "traffic map: locations and where each deployment is served" });
  locs.forEach(l => {
    const n = Object.values(summary[l.name] || {}).reduce((a, b) => a + b, 0);
    const g = s("a", { href: `#/inventory`, "data-map-location": l.name },
      s("rect", { x: pos[l.name] - 60, y: 10, width: 120, height: 56, rx: 8,
        class: "map-node " + (l.status === "ok" ? "ok" : l.status === "unknown" ? "warning" : "bad") }),
      s("text", { x: pos[l.name], y: 32, "text-anchor": "middle", class: "map-title" }, l.name),
      s("text", { x: pos[l.name], y: 52, "text-anchor": "middle", class: "map-sub" },
        `${l.provider} · ${n} inst.`));
    svg.append(g);
  });
  deps.forEach((d, i) => {
    const y = 100 + i * rowH;
    const serving = new Set(d.status.serving || []);
    const row = s("a", { href: `#/deployments/${d.name}`, "data-map-deployment": d.name,
      "data-serving": [...serving].join(",") });
    row.append(s("text", { x: 10, y: y + 4, class: "map-title" }, d.name));
    Object.entries(d.status.locations || {}).forEach(([l, v]) => {
      if (pos[l] === undefined) return;
      row.append(s("line", { x1: 120, y1: y, x2: pos[l], y2: 66,
        class: "map-edge " + (serving.has(l) ? "serving" : "standby") + (v.up ? "" : " down"),
        "data-edge": `${d.name}:${l}` }));
    });
    svg.append(row);
  });
  if (deps.length === allDeps.length) return svg;
  return h("div", {}, svg, h("p", { class: "muted", id: "map-more" },
    `showing ${deps.length} of ${allDeps.length} deployments, those with a location down first; all are in the table below`));
}

async function overview() {
  const gen = routeGen;
  const [locs, summary, deps] = await Promise.all([
    api("/v1/locations"), api("/v1/inventory/summary"), api("/v1/deployments")]);
  const problems = l => (l.status !== "ok" ? 2 : 0) + ((summary[l.name]?.error || 0) + (summary[l.name]?.missing || 0) ? 1 : 0);
  locs.sort((a, b) => problems(b) - problems(a) || a.name.localeCompare(b.name));
  const total = s => Object.values(s || {}).reduce((a, b) => a + b, 0);
  const [failed, nodes] = await Promise.all([api("/v1/jobs?status=failed&limit=5").catch(() => ({ items: [] })),
    api("/v1/nodes").catch(() => [])]);
  if (stale(gen)) return;
  const leader = nodes.find(n => n.role === "leader");
  const allStates = {};
  for (const st of Object.values(summary)) for (const [k, n] of Object.entries(st)) allStates[k] = (allStates[k] || 0) + n;
  const alerts = [
    ...locs.filter(l => !["ok", "unknown"].includes(l.status)).map(l => `location ${l.name} is ${l.status}: ${l.status_detail || ""}`),
    ...deps.filter(d => d.status.sla?.violated).map(d => `deployment ${d.name}: ${slaText(d.status.sla)}`),
    ...deps.filter(d => Object.keys(d.status.locations || {}).length && !Object.values(d.status.locations).some(v => v.up)).map(d => `deployment ${d.name} has no healthy replica`),
    ...failed.items.map(j => `job ${j.kind} ${j.target || ""} failed: ${j.error?.detail || ""}`),
    ...(nodes.length && !leader ? ["no node of the control plane leads: no failover, policy or sync happens"] : []),
    ...(nodes.length > 1 ? nodes.filter(n => n.role === "down").map(n => `node ${n.name} (${n.api_url}) is down; its jobs were taken over`) : [])];
  const byTrouble = deps.slice().sort((a, b) => trouble(a) - trouble(b) || a.name.localeCompare(b.name));
  const deploymentsTable = h("div", { id: "overview-deployments" });
  const listDeployments = all => deploymentsTable.replaceChildren(table([
      { title: "name", cell: d => h("a", { href: `#/deployments/${d.name}` }, d.name) },
      { title: "primary", cell: d => d.primary || "" },
      { title: "health", cell: d => Object.entries(d.status.locations || {}).map(([l, v]) =>
          h("span", { class: "pill " + (v.up ? "ok" : "bad") }, `${l} ${v.healthy}/${v.replicas}`)) },
      { title: "availability", cell: d => !d.status.sla ? "" : h("span", {
          class: d.status.sla.violated ? "bad" : d.status.sla.measuring ? "" : "ok",
          title: d.status.sla.measuring ? "warm-up: availability counts once the deployment first serves" : null },
          slaText(d.status.sla)) },
    ], all ? byTrouble : byTrouble.slice(0, MAP_ROWS)),
    byTrouble.length > MAP_ROWS && !all ? h("button", { id: "all-deployments", onclick: () => listDeployments(true) },
      `show all ${byTrouble.length}`) : "");
  const mapBox = h("div", { class: "card map", id: "map" }, trafficMap(locs, summary, deps));
  main.replaceChildren(
    h("h2", {}, "Overview ", h("small", { id: "live" }, "(live)")),
    h("div", { class: "totals", id: "totals" },
      h("span", { class: "pill" }, `${locs.length} locations`),
      h("span", { class: "pill" }, `${deps.length} deployments`),
      nodes.length > 1 ? h("span", { class: "pill", id: "nodes", title: nodes.map(n => `${n.name}: ${n.role}`).join(", ") },
        `${nodes.filter(n => n.role !== "down").length} of ${nodes.length} nodes up · leader ${leader ? leader.name : "none"}`) : "",
      ...Object.entries(allStates).map(([k, n]) => h("span", { class: "pill " + stateClass(k) }, `${n} ${k}`))),
    h("div", { class: "card", id: "alerts" }, h("h3", {}, "Alerts"),
      alerts.length ? h("ul", {}, alerts.map(a => h("li", { class: "error" }, a))) : h("p", { class: "ok" }, "Nothing needs attention.")),
    mapBox,
    h("div", { class: "grid" }, locs.map(l => h("div", { class: "card location", "data-location": l.name },
      h("h3", {}, l.name, " ", badge(l.status)),
      h("div", {}, `${l.provider}${l.driver ? " / " + l.driver : ""} · ${l.region}`),
      h("div", {}, Object.entries(l.labels).map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`))),
      h("div", {}, `${total(summary[l.name])} instances: `,
        Object.entries(summary[l.name] || {}).map(([s, n]) => h("span", { class: "pill " + stateClass(s) }, `${n} ${s}`))),
      l.status_detail ? h("div", { class: "error" }, l.status_detail) : "",
    ))),
    h("h3", {}, "Deployments"),
    deploymentsTable);
  listDeployments(false);
  ready();
  // the map follows what happens: traffic and health events redraw it at once
  const redraw = async () => {
    const [l2, s2, d2] = await Promise.all([api("/v1/locations"), api("/v1/inventory/summary"),
      api("/v1/deployments")]);
    mapBox.replaceChildren(trafficMap(l2, s2, d2));
  };
  stopPage = follow(ev => {
    if (!/^(traffic|health|deployment|location)\./.test(ev.kind)) return;
    // the decision is the event; the data plane applies it a moment later: look again then
    for (const ms of [0, 250, 600, 1000]) setTimeout(redraw, ms);
  });
}

// ---- inventory --------------------------------------------------------------------------------

async function inventory() {
  const gen = routeGen;
  const locsP = api("/v1/locations");  // for the filter only: do not wait for it to list
  const f = { location: "", state: "", name: "", tag: "", sort: "" };
  const chosen = new Set();  // instances ticked for a bulk action
  const body = h("div");
  const select = (key, options) => h("select", { id: `filter-${key}`, onchange: e => { f[key] = e.target.value; load(); } },
    h("option", { value: "" }, `all ${key}s`), options.map(o => h("option", { value: o }, o)));
  const locSelect = select("location", []);
  locsP.then(locs => locSelect.append(...locs.map(l => h("option", { value: l.name }, l.name))));
  main.replaceChildren(h("h2", {}, "Inventory"),
    h("div", { class: "filters" },
      field("location", locSelect),
      field("state", select("state", ["running", "stopped", "suspended", "pending", "error", "missing"])),
      field("name", h("input", { id: "filter-name", placeholder: "search names", oninput: e => { f.name = e.target.value; load(); } })),
      field("tag", h("input", { id: "filter-tag", placeholder: "key=value", onchange: e => { f.tag = e.target.value; load(); } }))),
    h("div", { class: "filters", id: "bulk" }, h("span", { id: "bulk-count" }, "0 selected"),
      ...["start", "stop", "reboot", "destroy"].map(a => h("button", { "data-bulk": a, onclick: () => bulk(a) }, `${a} selected`))),
    body);

  async function bulk(action) {
    const ids = [...chosen];
    if (!ids.length || !confirm(`${action} ${ids.length} instances?`)) return;
    const jobs = await Promise.all(ids.map(id => (action === "destroy"
      ? api(`/v1/instances/${id}`, { method: "DELETE" })
      : api(`/v1/instances/${id}/${action}`, { method: "POST" })).catch(err => ({ error: err.message }))));
    await Promise.all(jobs.filter(j => j.id).map(j => waitJob(j).catch(() => null)));
    chosen.clear();
    load();
  }
  const counted = () => { document.getElementById("bulk-count").textContent = `${chosen.size} selected`; };

  async function act(inst, action) {
    const asked = await instanceAction(inst, action).catch(() => true);  // a failure shows in the row
    if (asked) load();
  }

  // a real link (no javascript: URL, which the page's own CSP blocks), kept from navigating
  const sortable = (title, key) => ({ title: h("a", { href: "#/inventory", role: "button", "data-sort": key,
    onclick: e => { e.preventDefault(); f.sort = f.sort === key ? `-${key}` : key; load(); } },
    title, f.sort === key ? " ▲" : f.sort === `-${key}` ? " ▼" : "") });
  const columns = () => [
    { title: h("input", { type: "checkbox", "aria-label": "select all on this page", onchange: e => {
        document.querySelectorAll("input[data-pick]").forEach(c => { c.checked = e.target.checked;
          e.target.checked ? chosen.add(c.dataset.pick) : chosen.delete(c.dataset.pick); });
        counted(); } }),
      cell: i => h("input", { type: "checkbox", "data-pick": i.id, "aria-label": `select ${i.name}`,
        onchange: e => { e.target.checked ? chosen.add(i.id) : chosen.delete(i.id); counted(); } }) },
    { ...sortable("name", "name"), cell: i => h("a", { href: `#/instance/${i.id}` }, i.name) },
    { title: "id", cell: i => i.id },
    { ...sortable("location", "location"), cell: i => i.location }, { title: "provider", cell: i => i.provider },
    { ...sortable("state", "state"), cell: i => badge(i.state) }, { ...sortable("image", "image"), cell: i => i.image },
    { ...sortable("size", "size"), cell: i => i.size },
    { title: "tags", cell: i => Object.entries(i.tags).filter(([k]) => !k.startsWith("onepane:"))
        .map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`)) },
    { title: "address", cell: i => `${i.addresses[0] || ""}${i.ports.app ? ":" + i.ports.app : ""}` },
    { title: "", cell: i => (ACTIONS_BY_STATE[i.state] || ["destroy"]).map(a =>
        h("button", { "data-action": a, onclick: () => act(i, a) }, a)) },
  ];
  const rowAttrs = i => ({ "data-instance": i.id, "data-location": i.location });
  let seq = 0;
  async function load() {
    const mine = ++seq;
    const q = new URLSearchParams({ limit: "50" });  // a page at a time keeps rendering fast
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    chosen.clear(); counted();
    const cols = columns();
    const extras = Promise.all([api("/v1/volumes?limit=200"), api("/v1/networks?limit=200")]);
    const page = await api(`/v1/instances?${q}`);
    if (mine !== seq) return;
    const instances = table(cols, page.items, rowAttrs);
    const more = h("p");
    let cursor = page.next_cursor;
    const addMore = () => {
      more.replaceChildren(cursor ? h("button", { id: "more", onclick: async () => {
        q.set("cursor", cursor);
        const next = await api(`/v1/instances?${q}`);
        instances.tBodies[0].append(...table(cols, next.items, rowAttrs).tBodies[0].children);
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
    const vnOut = h("div", { id: "vn-action-result", role: "status" });
    below.replaceChildren(
      h("h3", {}, "Volumes"),
      table([{ title: "name", cell: v => v.name }, { title: "location", cell: v => v.location },
        { title: "size", cell: v => `${v.size_gb} GB` }, { title: "state", cell: v => v.state },
        { title: "attached to", cell: v => v.attached_to || "" },
        { title: "", cell: v => volumeActions(v, page.items, vnOut) }], vols.items,
        v => ({ "data-volume": v.id })),
      h("h3", {}, "Networks"),
      table([{ title: "name", cell: n => n.name }, { title: "location", cell: n => n.location },
        { title: "cidr", cell: n => n.cidr || "" }, { title: "state", cell: n => n.state },
        { title: "", cell: n => h("button", { "data-delete-network": n.id, onclick: () => vnAct(vnOut,
            `Delete network ${n.name} (${n.id})?`, () => api(`/v1/networks/${n.id}`, { method: "DELETE" })) }, "delete") }],
        nets.items, n => ({ "data-network": n.id })),
      vnOut);
  }
  // a volume: attached to an instance of its location (chosen from a list), detached, deleted
  function volumeActions(v, instances, vnOut) {
    if (v.attached_to) return h("button", { "data-detach": v.id, onclick: () => vnAct(vnOut,
      `Detach ${v.name} from ${v.attached_to}?`, () => api(`/v1/volumes/${v.id}/detach`, { method: "POST" })) }, "detach");
    const here = instances.filter(i => i.location === v.location && i.provider_id);
    const pick = h("select", { "aria-label": `attach ${v.name} to`, "data-attach-to": v.id },
      here.map(i => h("option", { value: i.id }, `${i.name} (${i.id})`)));
    return [here.length ? pick : "", here.length ? h("button", { "data-attach": v.id, onclick: () => vnAct(vnOut, null,
        () => api(`/v1/volumes/${v.id}/attach`, { method: "POST", body: { instance: pick.value } })) }, "attach") : "",
      h("button", { "data-delete-volume": v.id, onclick: () => vnAct(vnOut, `Delete volume ${v.name} (${v.id})?`,
        () => api(`/v1/volumes/${v.id}`, { method: "DELETE" })) }, "delete")];
  }
  async function vnAct(vnOut, question, call) {
    if (question && !confirm(question)) return;
    try { await waitJob(await call()); load(); }
    catch (err) { vnOut.replaceChildren(h("span", { class: "error" }, err.message)); }
  }
  await load();
  // The table follows what happens (creates, state changes, drift), a moment after the events
  // (several at once make one reload); not while rows are ticked for a bulk action.
  if (stale(gen)) return;
  let pending = null;
  stopPage = follow(ev => {
    if (!/^(instance|drift|volume|network)\./.test(ev.kind) || pending) return;
    pending = setTimeout(() => { pending = null; if (!chosen.size) load(); }, 300);
  });
}

// ---- one instance: tags, volumes, its events, its console --------------------------------------

async function instance(id) {
  const gen = routeGen;
  const [inst, vols, evs] = await Promise.all([api(`/v1/instances/${encodeURIComponent(id)}`),
    api(`/v1/volumes?limit=1000`), api(`/v1/events?subject=${encodeURIComponent(id)}&before=${2 ** 53}&limit=50`)]);
  if (stale(gen)) return;
  const consoleBox = h("pre", { id: "console-output", class: "console" }, "…");
  // what the inventory's rows offer, here too: only what makes sense in this state
  const actOut = h("span", { id: "instance-action-result", role: "status" });
  const act = action => async () => {
    actOut.replaceChildren(`${action}…`);
    try {
      if (!await instanceAction(inst, action)) { actOut.replaceChildren(); return; }
      if (action === "destroy") { location.hash = "#/inventory"; return; }
      route();
    } catch (err) { actOut.replaceChildren(h("span", { class: "error" }, err.message)); }
  };
  const actions = h("div", { class: "filters", id: "instance-actions" },
    (ACTIONS_BY_STATE[inst.state] || ["destroy"]).map(a => h("button", { "data-action": a, onclick: act(a) }, a)),
    actOut);
  main.replaceChildren(h("h2", {}, inst.name, " ", badge(inst.state)), actions,
    h("div", { class: "card" }, table([{ title: "field", cell: ([k]) => k }, { title: "value", cell: ([, v]) => v }], [
      ["id", inst.id], ["location", inst.location], ["provider id", inst.provider_id || ""],
      ["image", inst.image], ["size", inst.size], ["addresses", inst.addresses.join(", ")],
      ["ports", Object.entries(inst.ports).map(([k, v]) => `${k}=${v}`).join(", ")],
      ["network", inst.network || ""], ["created", inst.created_at.slice(0, 19) + "Z"]])),
    h("div", { class: "card" }, h("h3", {}, "Tags"), h("div", { id: "instance-tags" },
      Object.entries(inst.tags).map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`)))),
    h("div", { class: "card" }, h("h3", {}, "Volumes"), table([{ title: "id", cell: v => v.id },
      { title: "name", cell: v => v.name }, { title: "size", cell: v => `${v.size_gb} GB` },
      { title: "device", cell: v => v.device || "" }], vols.items.filter(v => v.attached_to === inst.id))),
    h("div", { class: "card" }, h("h3", {}, "Events"), h("ul", { class: "timeline", id: "instance-events" },
      evs.items.slice().reverse().map(e => h("li", {}, `${e.ts.slice(0, 19)}Z · ${e.message}`)))),
    h("div", { class: "card" }, h("h3", {}, "Console"), consoleBox));
  ready();
  api(`/v1/instances/${encodeURIComponent(id)}/console`)
    .then(c => { consoleBox.textContent = c.output || "(empty)"; })
    .catch(err => { consoleBox.textContent = err.message; });
}

// ---- deployments ------------------------------------------------------------------------------

async function deployments(name) {
  const gen = routeGen;
  const deps = await api("/v1/deployments");
  if (stale(gen)) return;
  if (!name && deps.length) name = deps[0].name;
  const top = h("div"), timeline = h("div");
  const rateBox = h("div", { id: "chart-rate" }), latBox = h("div", { id: "chart-latency" }),
    healthBox = h("div", { id: "chart-health" }), replicasBox = h("div", { id: "replicas" }),
    errBox = h("div", { id: "chart-errors" });
  let range = 0;  // 0: live, sampled while the page is open; else seconds of stored metrics
  main.replaceChildren(h("h2", {}, "Deployments"),
    h("div", { class: "filters" }, deps.map(d => h("a", { class: "pill", href: `#/deployments/${d.name}` }, d.name))),
    top);
  if (!name) { top.append("No deployments yet: onepane deployments apply -f spec.yaml"); ready(); return; }
  main.append(h("div", { class: "card" }, h("h3", {}, "Replicas (live, from the metrics the policies read)"),
      replicasBox),
    h("div", { class: "card" },
      h("div", { class: "filters" }, h("label", {}, "time range ", h("select", { id: "chart-range",
        onchange: e => { range = Number(e.target.value); Object.keys(charts).forEach(k => delete charts[k]); history(); } },
        ...[["0", "live"], ["900", "15 min"], ["3600", "1 h"], ["86400", "24 h"], ["604800", "7 days"]]
          .map(([v, t]) => h("option", { value: v }, t))))),
      h("h3", {}, "Requests per second, by location"), rateBox,
      h("h3", {}, "Latency through the data plane (ms): p50, p95, p99"), latBox,
      h("h3", {}, "Errors per second"), errBox,
      h("h3", {}, "Healthy replicas, by location"), healthBox),
    timeline);

  let current = null;
  async function render() {
    const subject = encodeURIComponent(name);
    // only this deployment's history: one deleted earlier under the same name is not it
    const d = await api(`/v1/deployments/${name}`);
    const since = encodeURIComponent(d.created_at);
    const [moves, decisions, phases, locations] = await Promise.all([
      api(`/v1/events?subject=${subject}&kind=traffic.&since=${since}&limit=1000`),
      api(`/v1/events?subject=${subject}&kind=policy.&since=${since}&limit=1000`),
      api(`/v1/events?subject=${subject}&kind=move.&since=${since}&limit=1000`), api("/v1/locations")]);
    const evs = { items: [...moves.items, ...decisions.items, ...phases.items].sort((a, b) => a.id - b.id) };
    // Live moves: offered when the primary can move a running VM, to locations of its kind.
    const byName = Object.fromEntries(locations.map(l => [l.name, l]));
    const here = byName[d.primary];
    const targets = here && here.capabilities.live_migration ? locations.filter(l =>
      l.name !== d.primary && l.provider === here.provider && l.capabilities.live_migration) : [];
    const liveTo = h("select", { id: "live-to", "aria-label": "live move to" }, targets.map(l => h("option", { value: l.name }, l.name)));
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
      // the decision is stored at once; the data plane follows a moment later: show both
      for (let i = 0; i < 50; i++) {
        await render();
        if (current && (current.status.serving || []).join() === (current.primary || "")) break;
        await new Promise(r => setTimeout(r, 100));
      }
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
      d.status.sla && d.status.sla.measuring && !d.status.sla.violated ? h("p", { id: "sla" },
        `SLA: measuring (warm-up, target ${d.status.sla.target}%)`) :
      d.status.sla ? h("p", { id: "sla", class: d.status.sla.violated ? "bad" : "ok" },
        `SLA: ${slaText(d.status.sla)} · `,
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
  function plot(key, box, labels, data, unit = "") {
    if (!window.uPlot || !data[0].length) return;
    const opts = { width: Math.max(280, box.clientWidth || main.clientWidth - 60), height: 170,
      legend: { live: false },
      tzDate: ts => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"),  // UTC, as the rest of the console
      axes: [{ space: 70, incrs: TIME_STEPS, label: "UTC",
               values: (u, ticks) => ticks.map(t => chartTime(t, u.scales.x.max - u.scales.x.min)) },
             { size: 80, values: (u, ticks) => ticks.map(v => `${+v.toFixed(2)}${unit}`) }],
      // distinct dashes as well as colours: p50, p95 and p99 often lie on top of each other
      series: [{ value: (u, t) => t == null ? "—" : chartTime(t, 0) + " UTC" },
        ...labels.map((l, i) => ({ label: l, stroke: colors[i % 4], width: 2, dash: DASHES[i % 4],
          value: (u, v) => v == null ? "—" : `${v.toFixed(2)}${unit}` }))] };
    // a stored range spans the whole window asked for, however little of it has data yet
    if (range) opts.scales = { x: { time: true, range: () => { const now = Date.now() / 1000; return [now - range, now]; } } };
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
  // Stored metrics over a range: one x axis (every sample time), a series per line.
  async function history() {
    if (!range) return;
    const m = await api(`/v1/deployments/${name}/metrics?since=${range}`).catch(() => ({ series: [] }));
    const xsSet = new Set();
    for (const sr of m.series) for (const p of sr.points) xsSet.add(p[0]);
    const xs = [...xsSet].sort((a, b) => a - b);
    const at = Object.fromEntries(xs.map((x, i) => [x, i]));
    const line = pick => { const out = xs.map(() => null); for (const sr of m.series.filter(pick))
      for (const p of sr.points) out[at[p[0]]] = (out[at[p[0]]] ?? 0) + p[1]; return out; };
    const locs = [...new Set(m.series.filter(sr => sr.name === "rps" || sr.name === "up").map(sr => sr.location))].filter(Boolean);
    plot("rate", rateBox, locs, [xs, ...locs.map(l => line(sr => sr.name === "rps" && sr.location === l))], " req/s");
    plot("lat", latBox, ["p50", "p95", "p99"], [xs, ...["p50_ms", "p95_ms", "p99_ms"].map(n => line(sr => sr.name === n))], " ms");
    plot("err", errBox, ["errors"], [xs, line(sr => sr.name === "errors_per_s")], "/s");
    plot("health", healthBox, locs, [xs, ...locs.map(l => line(sr => sr.name === "up" && sr.location === l))]);
    rateBox.dataset.range = String(range);  // the charts now show this range (tests wait on it)
  }
  async function sample() {
    replicas();
    if (range) return;  // a stored range is drawn once, not sampled
    const t = await api(`/v1/deployments/${name}/traffic`).catch(() => ({}));
    if (!current || !t.ts) return;
    samples.push({ t, health: current.status.locations || {} });
    if (samples.length > 300) samples.shift();
    const locs = Object.keys(current.status.locations || {});
    const xs = [], rate = locs.map(() => []), lat = [[], [], []], health = locs.map(() => []), errs = [];
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1].t, b = samples[i].t, dt = Math.max(0.001, b.ts - a.ts);
      xs.push(b.ts);
      locs.forEach((l, j) => {
        rate[j].push(Math.max(0, ((b.by_location || {})[l] || 0) - ((a.by_location || {})[l] || 0)) / dt);
        health[j].push(samples[i].health[l]?.healthy ?? 0);
      });
      lat[0].push(b.p50_ms ?? null); lat[1].push(b.p95_ms ?? null); lat[2].push(b.p99_ms ?? null);
      errs.push(Math.max(0, (b.failed || 0) - (a.failed || 0)) / dt);
    }
    plot("rate", rateBox, locs, [xs, ...rate], " req/s");
    plot("lat", latBox, ["p50", "p95", "p99"], [xs, ...lat], " ms");
    plot("err", errBox, ["errors"], [xs, errs], "/s");
    plot("health", healthBox, locs, [xs, ...health]);
  }
  await render();
  const timer = setInterval(() => { sample(); }, 1000);
  sample();
  // live: every traffic or health event for this deployment redraws the page
  const unfollow = follow(ev => {
    if (ev.subject !== name) return;
    render();
    if (ev.kind.startsWith("traffic.")) setTimeout(render, 400);  // the data plane follows
  });
  stopPage = () => { clearInterval(timer); unfollow(); };
}

// ---- images -----------------------------------------------------------------------------------

async function images() {
  const gen = routeGen;
  const [locs, catalog] = await Promise.all([api("/v1/locations"), api("/v1/catalog")]);
  if (stale(gen)) return;
  main.replaceChildren(h("h2", {}, "Images"), h("h3", {}, "Catalog"),
    catalog.length ? table([
      { title: "name", cell: i => `${i.name} ${i.version}` }, { title: "id", cell: i => i.id },
      { title: "os", cell: i => i.os || "" }, { title: "hardware", cell: i => `${i.cpus} CPU, ${i.memory_mb} MB` },
      { title: "disks", cell: i => i.disks.map(d => `${d.format} ${Math.round(d.virtual_size / 2 ** 20)} MiB`).join(", ") },
      { title: "replicas", cell: i => i.replicas.map(r => h("span", {
          class: "pill " + (r.state === "ready" ? "ok" : r.state === "failed" ? "bad" : "warning"),
          title: r.error || r.provider_image_id || "", "data-replica": `${r.location}:${r.state}` },
          `${r.location} ${r.state}${r.state === "ready" || r.state === "failed" ? "" : " " + r.progress + "%"}`)) },
      { title: "replicate", cell: i => replicateTo(i, locs) },
      { title: "export", cell: i => ["ova", "qcow2", "vmdk"].map(fmt => h("button", {
          "data-export": `${i.id}:${fmt}`, onclick: e => download(i, fmt, e.target) }, fmt)) },
      { title: "", cell: i => h("button", { "data-delete-image": i.id, onclick: () => deleteImage(i) }, "delete") },
    ], catalog, i => ({ "data-image": i.id })) : h("p", {}, "No images yet: onepane images import FILE --name NAME"));
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

// Off the catalog and every location; the server refuses (409, said in the alert) while a
// deployment, a replication or an instance still needs it.
async function deleteImage(img) {
  if (!confirm(`Delete ${img.name} ${img.version} (${img.id}) from the catalog and every location?`)) return;
  try { await api(`/v1/catalog/${img.id}`, { method: "DELETE" }); route(); }
  catch (err) { alert(err.message); }
}

// A select of the locations an image is not at yet, and a button that replicates it there.
function replicateTo(img, locs) {
  const have = new Set(img.replicas.map(r => r.location));
  const missing = locs.filter(l => !have.has(l.name));
  if (!missing.length) return "";
  const to = h("select", { "aria-label": `replicate ${img.name} to` },
    missing.map(l => h("option", { value: l.name }, l.name)));
  const go = async () => {
    try { await api(`/v1/catalog/${img.id}/replicate`, { method: "POST", body: { to: [to.value] } }); route(); }
    catch (err) { alert(err.message); }
  };
  return h("span", {}, to, h("button", { "data-replicate": img.id, onclick: go }, "replicate"));
}

// The export needs the token in a header, so it is fetched and handed to the browser as a file.
async function download(img, fmt, button) {
  const before = button.textContent;
  button.disabled = true;
  button.textContent = `${fmt}…`;
  try {
    const r = await fetch(`/v1/catalog/${img.id}/export?format=${fmt}`,
      { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` } });
    if (!r.ok) throw new Error((await r.json()).detail || r.statusText);
    const url = URL.createObjectURL(await r.blob());
    const a = h("a", { href: url, download: `${img.name}.${fmt}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) { alert(`export failed: ${err.message}`); }
  finally { button.disabled = false; button.textContent = before; }
}

// ---- manage: what the CLI does for day-to-day work --------------------------------------------

const SAMPLE_SPEC = `name: shop
image: httpecho
size: small
replicas: {dc-a: 1, dc-b: 1}
listen: 127.0.0.1:0
traffic: {mode: active-passive, order: [dc-a, dc-b]}
`;

async function manage() {
  const gen = routeGen;
  const [locs, tokens, keys] = await Promise.all([api("/v1/locations"),
    api("/v1/tokens").catch(() => null), api("/v1/access-keys").catch(() => null)]);
  if (stale(gen)) return;
  const out = id => h("div", { id, class: "result" });

  // a deployment from YAML, with the API's field errors next to the editor
  const spec = h("textarea", { id: "spec", rows: "10", spellcheck: "false" }, SAMPLE_SPEC);
  const specOut = out("spec-result");
  const apply = async () => {
    specOut.replaceChildren();
    // a spec naming a deployment that exists replaces it: ask first, saying what runs now
    const named = /^name:\s*["']?([\w.-]+)/m.exec(spec.value);
    if (named) {
      const live = await api(`/v1/deployments/${encodeURIComponent(named[1])}`).catch(() => null);
      if (live && !confirm(`Deployment ${live.name} exists (generation ${live.generation}, serving `
          + `${(live.status?.serving || []).join(", ") || "nowhere"}). Replace its spec with this one?`)) {
        specOut.replaceChildren(h("span", { class: "warning", id: "spec-kept" }, `${live.name} left as it was`));
        return;
      }
    }
    try {
      const d = await api("/v1/deployments", { method: "POST", yaml: spec.value });
      specOut.replaceChildren(h("span", { class: "ok" }, `applied: ${d.name} (generation ${d.generation}) `),
        h("a", { href: `#/deployments/${d.name}` }, "open"));
    } catch (err) {
      const errs = err.problem?.errors || [];
      specOut.replaceChildren(h("div", { class: "error" }, err.message),
        h("ul", { id: "spec-errors" }, errs.map(e => h("li", { "data-field": e.field || "" },
          h("code", {}, e.field || ""), " ", (e.reason || e.message || "").replace(/^request body: [^:]*: /, "")))));
    }
  };

  // an instance
  const f = { name: h("input", { id: "new-name", placeholder: "name", value: "web-1" }),
    location: h("select", { id: "new-location", onchange: () => choices() },
      locs.map(l => h("option", { value: l.name }, l.name))),
    image: h("select", { id: "new-image" }), size: h("select", { id: "new-size" }) };
  // what the chosen location has: its images (catalog images replicated there first) and sizes
  async function choices() {
    const loc = f.location.value;
    if (!loc) return;
    const [imgs, cat, sizes] = await Promise.all([
      api(`/v1/images?location=${encodeURIComponent(loc)}&limit=200`).catch(() => []),
      api("/v1/catalog").catch(() => ({ items: [] })),
      api(`/v1/locations/${encodeURIComponent(loc)}/sizes`).catch(() => [])]);
    if (f.location.value !== loc) return;
    // only what boots there: a process location keeps disk images without booting them
    const ready = (cat.items || cat).filter(c => (c.replicas || []).some(r => r.location === loc && r.state === "ready" && r.bootable !== false));
    f.image.replaceChildren(...ready.map(c => h("option", { value: c.id }, `${c.name} (${c.id})`)),
      ...imgs.filter(i => !(i.extra && i.extra.bootable === false)).map(i => h("option", { value: i.id }, i.name === i.id ? i.id : `${i.name} (${i.id})`)));
    f.size.replaceChildren(...(ready.length ? [h("option", { value: "auto" }, "auto (what the image asks for)")] : []),
      ...sizes.map(z => h("option", { value: z.id }, z.name && z.name !== z.id ? `${z.id} (${z.name})` : z.id)));
    const nano = sizes.find(z => z.id === "nano");
    if (nano && !ready.length) f.size.value = "nano";
  }
  choices();
  const instOut = out("instance-result");
  const create = async () => {
    instOut.replaceChildren("creating…");
    try {
      const job = await api("/v1/instances", { method: "POST", body: { name: f.name.value,
        location: f.location.value, image: f.image.value, size: f.size.value } });
      await waitJob(job);
      instOut.replaceChildren(h("span", { class: "ok" }, `created ${job.target}`));
    } catch (err) { instOut.replaceChildren(h("span", { class: "error" }, err.message)); }
  };

  // an image: uploaded with a progress bar, then replicated where asked
  const file = h("input", { id: "image-file", type: "file" });
  const imgName = h("input", { id: "image-name", placeholder: "name", value: "base" });
  const bar = h("progress", { id: "upload-progress", max: "100", value: "0" });
  const targets = h("select", { id: "image-targets", multiple: true, size: String(Math.min(4, locs.length)) },
    locs.map(l => h("option", { value: l.name }, l.name)));
  const imgOut = out("image-result");
  const upload = () => {
    if (!file.files.length) return;
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/catalog?name=${encodeURIComponent(imgName.value)}`);
    xhr.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}`);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = e => { if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total); };
    xhr.onload = async () => {
      const body = JSON.parse(xhr.responseText || "{}");
      if (xhr.status >= 300) { imgOut.replaceChildren(h("span", { class: "error" }, body.detail || xhr.statusText)); return; }
      bar.value = 100;
      const to = [...targets.selectedOptions].map(o => o.value);
      if (to.length) await api(`/v1/catalog/${body.id}/replicate`, { method: "POST", body: { to } });
      imgOut.replaceChildren(h("span", { class: "ok" }, `imported ${body.id}`), " ",
        h("a", { href: "#/images" }, "replication progress"));
    };
    xhr.send(file.files[0]);
  };

  // tokens and access keys: a secret is shown once, here
  const secretOut = out("secret-result");
  const tokName = h("input", { id: "token-name", placeholder: "name", value: "ci" });
  const tokRole = h("select", { id: "token-role" }, ["viewer", "operator", "admin"].map(r => h("option", { value: r }, r)));
  const tokBox = h("div", { class: "scroll" });
  const showTokens = list => tokBox.replaceChildren(table([
    { title: "name", cell: t => t.name }, { title: "role", cell: t => t.role },
    { title: "created", cell: t => t.created_at.slice(0, 19) + "Z" },
    { title: "", cell: t => h("button", { onclick: revoke(`/v1/tokens/${t.id}`, `token ${t.name}`) }, "revoke") }],
    list, t => ({ "data-token": t.name })));
  const makeToken = async () => {
    try {
      const t = await api("/v1/tokens", { method: "POST", body: { name: tokName.value, role: tokRole.value } });
      secretOut.replaceChildren(h("div", {}, "Token (shown once): ", h("code", { id: "new-secret" }, t.token)));
      showTokens(await api("/v1/tokens"));
    } catch (err) { secretOut.replaceChildren(h("span", { class: "error" }, err.message)); }
  };
  function revoke(path, what) {
    return async () => {
      if (!confirm(`Revoke ${what}?`)) return;
      await api(path, { method: "DELETE" }); route();
    };
  }
  if (tokens) showTokens(tokens);

  // locations: added with credentials that are never shown again; removed with confirmation
  const lf = { name: h("input", { id: "loc-name", placeholder: "name, e.g. dc-c" }),
    provider: h("select", { id: "loc-provider" }, ["local", "netns", "vm", "cloud"].map(p => h("option", { value: p }, p))),
    driver: h("input", { id: "loc-driver", placeholder: "driver (cloud), e.g. ec2" }),
    region: h("input", { id: "loc-region", placeholder: "region", value: "local" }),
    key: h("input", { id: "loc-key", placeholder: "key (cloud)", autocomplete: "off" }),
    secret: h("input", { id: "loc-secret", type: "password", placeholder: "secret (cloud)", autocomplete: "off" }),
    options: h("input", { id: "loc-options", placeholder: 'options JSON, e.g. {"index": 5}' }) };
  const locOut = out("location-result");
  const addLocation = async () => {
    try {
      const body = { name: lf.name.value, provider: lf.provider.value, region: lf.region.value || "local",
        options: lf.options.value ? JSON.parse(lf.options.value) : {} };
      if (lf.driver.value) body.driver = lf.driver.value;
      if (lf.key.value || lf.secret.value) body.credentials = { key: lf.key.value, secret: lf.secret.value };
      const l = await api("/v1/locations", { method: "POST", body });
      lf.key.value = lf.secret.value = "";  // gone from the page as from every answer
      locOut.replaceChildren(h("span", { class: "ok" }, `added ${l.name} (${l.status})`));
      showLocations(await api("/v1/locations"));
    } catch (err) { locOut.replaceChildren(h("span", { class: "error" }, err.message)); }
  };
  const locBox = h("div", { class: "scroll" });
  const showLocations = list => locBox.replaceChildren(table([
    { title: "name", cell: l => l.name }, { title: "provider", cell: l => l.provider },
    { title: "credentials", cell: l => l.has_credentials ? "stored (never shown)" : "—" },
    { title: "", cell: l => h("button", { "data-remove-location": l.name, onclick: async () => {
        if (!confirm(`Remove location ${l.name}? Instances there must be gone first.`)) return;
        try { await api(`/v1/locations/${l.name}`, { method: "DELETE" }); showLocations(await api("/v1/locations")); }
        catch (err) { locOut.replaceChildren(h("span", { class: "error" }, err.message)); } } }, "remove") }],
    list, l => ({ "data-location-row": l.name })));
  showLocations(locs);

  // volumes and networks
  const vf = { name: h("input", { id: "vol-name", value: "data" }), size: h("input", { id: "vol-size", type: "number", value: "1", min: "1" }),
    location: h("select", { id: "vol-location" }, locs.map(l => h("option", { value: l.name }, l.name))) };
  const nf = { name: h("input", { id: "net-name", value: "backend" }), cidr: h("input", { id: "net-cidr", value: "10.50.0.0/24" }),
    location: h("select", { id: "net-location" }, locs.map(l => h("option", { value: l.name }, l.name))) };
  const vnOut = out("vn-result");
  const make = (path, body) => async () => {
    try { const job = await api(path, { method: "POST", body: body() }); await waitJob(job);
      vnOut.replaceChildren(h("span", { class: "ok" }, `created ${job.target}`)); }
    catch (err) { vnOut.replaceChildren(h("span", { class: "error" }, err.message)); }
  };
  main.replaceChildren(h("h2", {}, "Manage"),
    h("div", { class: "card" }, h("h3", {}, "Apply a deployment"), field("spec (YAML)", spec),
      h("p", {}, h("button", { id: "apply", onclick: apply }, "Apply")), specOut),
    h("div", { class: "card" }, h("h3", {}, "Create an instance"),
      h("div", { class: "filters" }, field("name", f.name), field("location", f.location),
        field("image", f.image), field("size", f.size),
        h("button", { id: "create-instance", onclick: create }, "Create")), instOut),
    h("div", { class: "card" }, h("h3", {}, "Import an image"),
      h("div", { class: "filters" }, field("disk or OVA file", file), field("name", imgName),
        field("replicate to", targets),
        h("button", { id: "upload", onclick: upload }, "Import")), bar, imgOut),
    h("div", { class: "card" }, h("h3", {}, "Volumes and networks"),
      h("div", { class: "filters" }, field("volume name", vf.name), field("size (GB)", vf.size),
        field("location", vf.location), h("button", { id: "create-volume",
        onclick: make("/v1/volumes", () => ({ name: vf.name.value, size_gb: Number(vf.size.value), location: vf.location.value })) }, "Create volume")),
      h("div", { class: "filters" }, field("network name", nf.name), field("CIDR", nf.cidr),
        field("location", nf.location), h("button", { id: "create-network",
        onclick: make("/v1/networks", () => ({ name: nf.name.value, cidr: nf.cidr.value, location: nf.location.value })) }, "Create network")),
      vnOut),
    tokens ? h("div", { class: "card" }, h("h3", {}, "Locations"),
      h("div", { class: "filters" }, ...Object.entries(lf).map(([k, el]) => field(k, el)),
        h("button", { id: "add-location", onclick: addLocation }, "Add location")),
      locOut, locBox) : "",
    tokens ? h("div", { class: "card" }, h("h3", {}, "Tokens"),
      h("div", { class: "filters" }, field("token name", tokName), field("role", tokRole),
        h("button", { id: "create-token", onclick: makeToken }, "Create token")),
      secretOut, tokBox) : h("p", {}, "Tokens and keys need the admin role."),
    keys ? h("div", { class: "card" }, h("h3", {}, "EC2 access keys"),
      h("div", { class: "scroll" }, table([{ title: "key id", cell: k => k.access_key_id }, { title: "name", cell: k => k.name },
        { title: "role", cell: k => k.role },
        { title: "", cell: k => h("button", { onclick: revoke(`/v1/access-keys/${k.access_key_id}`, `key ${k.name}`) }, "revoke") }],
        keys))) : "");
  ready();
}

// ---- events -----------------------------------------------------------------------------------

async function events() {
  // Filters the server applies (kind prefix, severity, time range) and paging back in time:
  // the newest 100 first, "Older" for the 100 before them.
  const state = { kind: "", severity: "", range: "", oldest: null };
  const tbody = h("tbody", { id: "events-feed" });
  const row = e => h("tr", { "data-kind": e.kind, "data-severity": e.severity },
    h("td", { "data-label": "time (UTC)" }, e.ts.replace("T", " ").slice(0, 19) + "Z"),
    h("td", { class: e.severity, "data-label": "severity" }, e.severity),
    h("td", { "data-label": "kind" }, e.kind), h("td", { "data-label": "location" }, e.location || ""),
    h("td", { "data-label": "subject" }, e.subject || ""),
    h("td", { class: "wrap message", "data-label": "message" }, e.message));
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
      field("kind", h("input", { id: "event-filter", placeholder: "prefix, e.g. traffic.",
        oninput: e => { state.kind = e.target.value; load(); } })),
      field("severity", h("select", { id: "event-severity", onchange: e => { state.severity = e.target.value; load(); } },
        ...[["", "any severity"], ["warning,error", "warnings and errors"], ["error", "errors"]]
          .map(([v, t]) => h("option", { value: v }, t)))),
      field("time", h("select", { id: "event-range", onchange: e => { state.range = e.target.value; load(); } },
        ...[["", "all time"], ["900", "last 15 min"], ["3600", "last hour"], ["86400", "last 24 h"],
            ["604800", "last 7 days"]].map(([v, t]) => h("option", { value: v }, t))))),
    h("div", {}, h("table", { id: "events-table" }, h("thead", {}, h("tr", {},
      ["time (UTC)", "severity", "kind", "location", "subject", "message"].map(t => h("th", {}, t)))), tbody)),
    older);
  await load();
  stopPage = follow(e => { if (matches(e)) { const r = row(e); r.className = "new"; tbody.prepend(r); } });
  ready();
}

// Server-sent events read through fetch, so that the token travels in a header.
// The header's indicator says whether the page is following the stream or reconnecting.
function liveState(state) {
  const el = document.getElementById("live-state");
  if (!el) return;
  el.textContent = state === "live" ? "● live" : state === "reconnecting" ? "○ reconnecting…" : "";
  el.className = state === "live" ? "ok" : "warning";
}

function follow(onEvent) {
  const ctrl = new AbortController();
  let backoff = 500;
  (async () => {
    while (!ctrl.signal.aborted) {
      try {
        const r = await fetch("/v1/events/stream", { signal: ctrl.signal,
          headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` } });
        if (!r.ok) throw new Error(r.statusText);
        liveState("live"); backoff = 500;
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
      liveState("reconnecting");
      await new Promise(r => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 5000);
    }
  })();
  return () => { ctrl.abort(); liveState(""); };
}

// ---- hosts ------------------------------------------------------------------------------------

// The hypervisor hosts of every location made of hosts: state, capacity, what is committed and
// which VMs each runs; maintenance empties a host live (a job), activate lets it take VMs again.
async function hosts() {
  const gen = routeGen;
  const locs = (await api("/v1/locations")).filter(l => Array.isArray(l.options?.hosts));
  const rows = await Promise.all(locs.map(l => api(`/v1/locations/${encodeURIComponent(l.name)}/hosts`)
    .then(list => ({ loc: l.name, list })).catch(err => ({ loc: l.name, list: [], error: err.message }))));
  if (stale(gen)) return;
  const out = h("div", { id: "hosts-result", class: "result", role: "status" });
  const act = (loc, host, verb) => async () => {
    if (verb === "maintenance" && !confirm(`Empty ${host} of ${loc}? Its VMs move live to the other hosts.`)) return;
    out.replaceChildren(verb === "maintenance" ? `emptying ${host}…` : `activating ${host}…`);
    try {
      const r = await api(`/v1/locations/${encodeURIComponent(loc)}/hosts/${encodeURIComponent(host)}/${verb}`, { method: "POST" });
      if (r && r.id && r.status) await waitJob(r);
      route();
    } catch (err) { out.replaceChildren(h("span", { class: "error" }, err.message)); }
  };
  const gib = mb => mb === undefined ? "" : `${(mb / 1024).toFixed(1)} GiB`;
  const sections = rows.map(({ loc, list, error }) => h("section", { "data-location": loc },
    h("h3", {}, loc), error ? h("p", { class: "error" }, error) : h("div", { class: "scroll" }, table([
      { title: "host", cell: r => r.name },
      { title: "state", cell: r => h("span", { class: { up: "ok", maintenance: "warning" }[r.state] || "bad" }, r.state) },
      { title: "CPUs", cell: r => r.cpus ?? "" },
      { title: "vCPUs given", cell: r => r.committed_vcpus ?? "" },
      { title: "memory", cell: r => gib(r.memory_mb) },
      { title: "memory given", cell: r => gib(r.committed_mb) },
      { title: "free", cell: r => gib(r.free_mb) },
      { title: "VMs", cell: r => (r.instances || []).map(i => h("a", { href: `#/instance/${i}` }, i, " ")) },
      { title: "", cell: r => r.state === "up" ? h("button", { onclick: act(loc, r.name, "maintenance") }, "maintenance")
        : r.state === "maintenance" ? h("button", { onclick: act(loc, r.name, "activate") }, "activate") : r.error || "" }],
      list, r => ({ "data-host": r.name, "data-state": r.state })))));
  main.replaceChildren(h("h2", {}, "Hosts"), out,
    ...(sections.length ? sections : [h("p", {}, "No location here is made of hypervisor hosts (a vm location with options.hosts).")]));
  ready();
}

// ---- locations: what each can do and how it is -------------------------------------------------

async function locations() {
  const gen = routeGen;
  const [locs, summary] = await Promise.all([api("/v1/locations"), api("/v1/inventory/summary").catch(() => ({}))]);
  if (stale(gen)) return;
  const count = l => Object.values(summary[l.name] || {}).reduce((a, b) => a + b, 0);
  main.replaceChildren(h("h2", {}, "Locations"), table([
    { title: "name", cell: l => l.name },
    { title: "provider", cell: l => l.driver ? `${l.provider} (${l.driver})` : l.provider },
    { title: "region", cell: l => l.region },
    { title: "status", cell: l => h("span", { class: stateClass(l.status) }, l.status) },
    { title: "why", wrap: true, cell: l => l.status_detail || "" },
    { title: "last sync (UTC)", cell: l => l.last_sync ? l.last_sync.replace("T", " ").slice(0, 19) : "never" },
    { title: "instances", cell: l => h("a", { href: "#/inventory" }, String(count(l))) },
    { title: "labels", cell: l => Object.entries(l.labels).map(([k, v]) => h("span", { class: "pill" }, `${k}=${v}`)) },
    { title: "cannot", wrap: true, cell: l => Object.entries(l.unsupported || {}).map(([f, why]) =>
        h("span", { class: "pill", title: why }, f.replace(/_/g, " "))) },
  ], locs, l => ({ "data-location-row": l.name, "data-status": l.status })));
  ready();
}

// ---- jobs: what was asked, what it did, why it failed -------------------------------------------

async function jobs() {
  const gen = routeGen;
  const f = { status: "", target: "" };
  const body = h("div");
  const more = h("p");
  const columns = [
    { title: "created (UTC)", cell: j => j.created_at.replace("T", " ").slice(0, 19) },
    { title: "kind", cell: j => j.kind },
    { title: "target", cell: j => !j.target ? "" : j.target.startsWith("inst-")
        ? h("a", { href: `#/instance/${j.target}` }, j.target) : j.target },
    { title: "location", cell: j => j.location || "" },
    { title: "status", cell: j => h("span", { class: { succeeded: "ok", failed: "bad" }[j.status] || "warning" }, j.status) },
    { title: "attempts", cell: j => String(j.attempts) },
    { title: "error", wrap: true, cell: j => j.error?.detail || "" },
  ];
  const rowAttrs = j => ({ "data-job": j.id, "data-status": j.status });
  async function load(cursor = null) {
    const q = new URLSearchParams({ limit: "100" });
    for (const [k, v] of Object.entries(f)) if (v) q.set(k, v);
    if (cursor) q.set("cursor", cursor);
    const page = await api(`/v1/jobs?${q}`);
    if (stale(gen)) return;
    if (cursor) body.querySelector("tbody").append(...table(columns, page.items, rowAttrs).tBodies[0].children);
    else body.replaceChildren(table(columns, page.items, rowAttrs));
    more.replaceChildren(page.next_cursor ? h("button", { id: "jobs-older", onclick: () => load(page.next_cursor) }, "Older") : "");
  }
  main.replaceChildren(h("h2", {}, "Jobs"),
    h("div", { class: "filters" },
      field("status", h("select", { id: "job-status", onchange: e => { f.status = e.target.value; load(); } },
        ["", "queued", "running", "succeeded", "failed"].map(v => h("option", { value: v }, v || "any status")))),
      field("target", h("input", { id: "job-target", placeholder: "inst-…, vol-…", onchange: e => { f.target = e.target.value.trim(); load(); } }))),
    body, more);
  await load();
  if (stale(gen)) return;
  ready();
  let pending = null;
  stopPage = follow(ev => {
    if (!ev.kind.startsWith("job.") || pending) return;
    pending = setTimeout(() => { pending = null; load(); }, 300);
  });
}

// ---- routing ----------------------------------------------------------------------------------

const pages = { overview, inventory, deployments, images, events, manage, instance, hosts, locations, jobs };

async function route() {
  stopPage(); stopPage = () => {};
  const gen = ++routeGen;
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
