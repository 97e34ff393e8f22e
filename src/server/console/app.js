// The Sluice console: one page, routed by the URL's hash, reading the admin listener's JSON
// (/v1/cluster, /v1/topics, /v1/partitions, /v1/groups, /v1/messages) and /metrics. Everything
// a client wrote (names, keys, values) is put in the page as text, never as HTML.
"use strict";

const page = document.getElementById("page");
const banner = document.getElementById("error");
let timers = [];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function link(href, text) {
  return el("a", { href }, text);
}

async function get(path, plain) {
  const response = await fetch(path, { cache: "no-store" });
  const body = plain ? await response.text() : await response.json();
  if (!response.ok) throw new Error(plain ? body : body.error || response.statusText);
  return body;
}

function showError(error) {
  banner.textContent = error ? String(error.message || error) : "";
  banner.hidden = !error;
}

function table(headers, rows, id) {
  return el("table", { "data-testid": id },
    el("thead", {}, el("tr", {}, headers.map(h => el("th", { class: h.endsWith("#") ? "num" : "" }, h.replace(/#$/, ""))))),
    el("tbody", {}, rows.length ? rows.map(cells => el("tr", {}, cells.map((c, i) =>
      el("td", { class: headers[i].endsWith("#") ? "num" : "" }, c)))) :
      el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none"))));
}

function card(label, value) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

const ids = list => (list || []).join(", ");
const dash = v => (v === null || v === undefined ? "-" : v);

function bytesText(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

// ---- metrics: the charts on the overview --------------------------------------------------

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/([a-zA-Z_]+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

const sum = (samples, name, filter) =>
  samples.filter(s => s.name === name && (!filter || filter(s.labels))).reduce((a, s) => a + s.value, 0);

// The p99 of the requests between two scrapes, from the histogram's cumulative buckets.
function p99(before, after, request) {
  const name = "kafka_network_requestmetrics_totaltime_seconds_bucket";
  const buckets = new Map();
  for (const s of after) if (s.name === name && s.labels.request === request) buckets.set(s.labels.le, s.value);
  for (const s of before) if (s.name === name && s.labels.request === request && buckets.has(s.labels.le)) buckets.set(s.labels.le, buckets.get(s.labels.le) - s.value);
  const sorted = [...buckets.entries()].map(([le, n]) => [le === "+Inf" ? Infinity : Number(le), n]).sort((a, b) => a[0] - b[0]);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (!total) return null;
  const bound = sorted.find(([, n]) => n >= total * 0.99);
  return bound && isFinite(bound[0]) ? bound[0] * 1000 : null;
}

function chart(title, unit) {
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 300 90");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.append(line);
  const now = el("span", { class: "now" }, "-");
  const node = el("div", { class: "chart", "data-testid": "chart" }, el("div", { class: "title" }, el("span", {}, title), now), svg);
  const points = [];
  return {
    node,
    push(value) {
      points.push(value);
      if (points.length > 60) points.shift();
      now.textContent = value === null ? "-" : (unit === "bytes" ? bytesText(value) + "/s" : value.toFixed(unit === "ms" ? 2 : 1) + " " + unit);
      const values = points.map(v => v || 0);
      const top = Math.max(1e-9, ...values);
      // The newest point at the right edge, one step per scrape.
      const x = i => 300 - ((values.length - 1 - i) * 300) / 59;
      line.setAttribute("points", values.map((v, i) => `${x(i)},${88 - (v / top) * 84}`).join(" "));
    },
  };
}

// ---- pages ----------------------------------------------------------------------------------

async function overview() {
  const cluster = await get("/v1/cluster");
  const charts = {
    in: chart("Bytes in", "bytes"),
    out: chart("Bytes out (consumers)", "bytes"),
    messages: chart("Messages in", "/s"),
    requests: chart("Requests", "/s"),
    produce: chart("Produce p99", "ms"),
    fetch: chart("Fetch p99", "ms"),
  };
  page.replaceChildren(
    el("h1", {}, "Cluster"),
    el("div", { class: "cards" },
      card("Cluster id", cluster.cluster_id),
      card("This node", cluster.node_id),
      card("Controller", dash(cluster.controller_id)),
      card("Brokers", cluster.brokers.length),
      card("Topics", cluster.topics),
      card("Partitions", cluster.partitions)),
    el("h2", {}, "Brokers"),
    table(["Id", "Host", "Port#", "Rack", "State"], cluster.brokers.map(b => [
      b.node_id + (b.node_id === cluster.controller_id ? " (controller)" : ""), b.host, b.port, dash(b.rack),
      b.fenced ? el("span", { class: "bad" }, "fenced") : el("span", { class: "ok" }, "live")]), "brokers"),
    el("h2", {}, "This node, live"),
    el("div", { class: "charts" }, Object.values(charts).map(c => c.node)));
  let previous = null;
  let previousAt = 0;
  const tick = async () => {
    const samples = parseMetrics(await get("/metrics", true));
    const at = performance.now();
    if (previous) {
      const seconds = Math.max(0.001, (at - previousAt) / 1000);
      const rate = name => Math.max(0, (sum(samples, name) - sum(previous, name)) / seconds);
      charts.in.push(rate("kafka_server_brokertopicmetrics_bytesin_total"));
      charts.out.push(rate("kafka_server_brokertopicmetrics_bytesout_total"));
      charts.messages.push(rate("kafka_server_brokertopicmetrics_messagesin_total"));
      charts.requests.push(rate("kafka_network_requestmetrics_requests_total"));
      charts.produce.push(p99(previous, samples, "Produce"));
      charts.fetch.push(p99(previous, samples, "Fetch"));
    }
    previous = samples;
    previousAt = at;
  };
  await tick();
  timers.push(setInterval(() => tick().catch(showError), 2000));
}

async function topics() {
  const [{ topics }] = await Promise.all([get("/v1/topics")]);
  const showInternal = location.hash.includes("internal=1");
  const shown = topics.filter(t => showInternal || !t.internal);
  page.replaceChildren(
    el("h1", {}, "Topics"),
    el("div", { class: "toolbar" }, `${shown.length} topics · `,
      showInternal ? link("#/topics", "hide internal topics") : link("#/topics?internal=1", "show internal topics")),
    table(["Name", "Partitions#", "Replicas#", "Configs"], shown.map(t => [
      link("#/topics/" + encodeURIComponent(t.name), t.name), t.partitions.length, t.replication_factor,
      Object.entries(t.configs).map(([k, v]) => `${k}=${v}`).join(", ")]), "topics"));
}

async function topic(name) {
  const [{ topics, node_id }, local] = await Promise.all([get("/v1/topics"), get("/v1/partitions")]);
  const t = topics.find(x => x.name === name);
  if (!t) throw new Error(`no topic ${name}`);
  const here = new Map(local.filter(p => p.topic === name).map(p => [p.partition, p]));
  page.replaceChildren(
    el("h1", {}, "Topic ", name),
    el("div", { class: "cards" }, card("Id", t.id), card("Partitions", t.partitions.length), card("Replication factor", t.replication_factor),
      card("Configs", Object.entries(t.configs).map(([k, v]) => `${k}=${v}`).join(", ") || "defaults")),
    el("h2", {}, "Partitions"),
    el("div", { class: "toolbar" }, `Node and core: where each replica this node (${node_id}) holds lives; offsets and sizes are this node's copy.`),
    table(["Partition#", "Leader", "Epoch#", "Replicas", "ISR", "Offline", "Node / core", "Log start#", "Log end#", "High watermark#", "Size#", ""],
      t.partitions.map(p => {
        const mine = here.get(p.partition);
        const lagging = p.isr.length < p.replicas.length;
        return [p.partition,
          p.leader === null ? el("span", { class: "bad" }, "none") : p.leader,
          p.leader_epoch, ids(p.replicas),
          lagging ? el("span", { class: "warn" }, ids(p.isr)) : ids(p.isr),
          p.offline_replicas.length ? el("span", { class: "bad" }, ids(p.offline_replicas)) : "",
          p.shard === null ? "-" : `node ${node_id} / core ${p.shard}`,
          dash(mine && mine.log_start_offset), dash(mine && mine.log_end_offset), dash(mine && mine.high_watermark),
          mine ? bytesText(mine.size_bytes) : "-",
          link(`#/messages?topic=${encodeURIComponent(name)}&partition=${p.partition}`, "browse")];
      }), "partitions"));
}

async function groups(refresh) {
  const all = await get("/v1/groups");
  page.replaceChildren(
    el("h1", {}, "Consumer groups"),
    el("div", { class: "toolbar" }, "The groups this node coordinates; lag against the partitions it leads."),
    table(["Group", "State", "Members#", "Partitions#", "Total lag#"], all.map(g => [
      link("#/groups/" + encodeURIComponent(g.group), g.group), g.state, g.members.length, g.offsets.length, g.total_lag]), "groups"));
  if (!refresh) timers.push(setInterval(() => groups(true).catch(showError), 5000));
}

async function group(name, refresh) {
  const all = await get("/v1/groups");
  const g = all.find(x => x.group === name);
  if (!g) throw new Error(`no group ${name} on this node`);
  const owner = new Map();
  for (const m of g.members) for (const a of m.assignment) owner.set(`${a.topic}/${a.partition}`, m.client_id || m.member_id);
  page.replaceChildren(
    el("h1", {}, "Group ", name),
    el("div", { class: "cards" }, card("State", g.state), card("Protocol", g.protocol || "-"), card("Members", g.members.length),
      el("div", { class: "card", "data-testid": "total-lag" }, el("div", { class: "label" }, "Total lag"), el("div", { class: "value" }, g.total_lag))),
    el("h2", {}, "Members"),
    table(["Member", "Client id", "Host", "Assigned partitions"], g.members.map(m => [
      m.member_id, m.client_id, m.host, m.assignment.map(a => `${a.topic}-${a.partition}`).join(", ")]), "members"),
    el("h2", {}, "Offsets and lag"),
    table(["Topic", "Partition#", "Committed#", "Log end#", "Lag#", "Member"], g.offsets.map(o => [
      link("#/topics/" + encodeURIComponent(o.topic), o.topic), o.partition, dash(o.committed_offset), dash(o.log_end_offset),
      dash(o.lag), owner.get(`${o.topic}/${o.partition}`) || "-"]), "offsets"));
  if (!refresh) timers.push(setInterval(() => group(name, true).catch(showError), 5000));
}

function decode(hex, format) {
  if (hex === null || hex === undefined) return el("span", { class: "muted" }, "null");
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
  if (format === "hex") return el("pre", {}, hex.replace(/(..)/g, "$1 ").trim());
  const text = new TextDecoder("utf-8").decode(bytes);
  if (format === "json") {
    try { return el("pre", {}, JSON.stringify(JSON.parse(text), null, 2)); } catch (_) { /* shown as text */ }
  }
  return el("pre", {}, text);
}

async function messages(params) {
  const { topics } = await get("/v1/topics");
  const topicName = params.get("topic") || (topics.find(t => !t.internal) || {}).name || "";
  const format = params.get("format") || "text";
  const input = (name, value, attrs) => el("input", Object.assign({ name, value: value || "" }, attrs));
  const form = el("form", { class: "browse", onsubmit: event => {
    event.preventDefault();
    const data = new FormData(event.target);
    const query = new URLSearchParams();
    for (const key of ["topic", "partition", "offset", "limit", "format"]) if (data.get(key)) query.set(key, data.get(key));
    const time = data.get("time");
    if (time) {
      query.delete("offset");
      query.set("timestamp", String(Date.parse(time + "Z")));
    }
    location.hash = "#/messages?" + query.toString();
  } },
    el("label", {}, "Topic", el("select", { name: "topic" }, topics.map(t => el("option", { value: t.name, selected: t.name === topicName }, t.name)))),
    el("label", {}, "Partition", input("partition", params.get("partition") || "0", { type: "number", min: "0", size: "5" })),
    el("label", {}, "From offset", input("offset", params.get("offset"), { type: "number", min: "0" })),
    el("label", {}, "Or from time (UTC)", input("time", "", { type: "datetime-local", step: "1" })),
    el("label", {}, "Records", input("limit", params.get("limit") || "50", { type: "number", min: "1", max: "500" })),
    el("label", {}, "Show as", el("select", { name: "format" }, ["text", "json", "hex"].map(f => el("option", { value: f, selected: f === format }, f)))),
    el("button", { type: "submit" }, "Read"));
  page.replaceChildren(el("h1", {}, "Messages"), form);
  if (!topicName) return;
  const query = new URLSearchParams({ topic: topicName, partition: params.get("partition") || "0", limit: params.get("limit") || "50" });
  for (const key of ["offset", "timestamp"]) if (params.get(key)) query.set(key, params.get(key));
  const read = await get("/v1/messages?" + query.toString());
  page.append(
    el("div", { class: "toolbar" }, `${read.topic}-${read.partition}: log start ${read.log_start_offset}, high watermark ${read.high_watermark}; ${read.records.length} records from offset ${read.from}`),
    table(["Offset#", "Timestamp", "Key", "Value", "Headers"], read.records.map(r => [
      r.offset, r.timestamp >= 0 ? new Date(r.timestamp).toISOString() : "-", decode(r.key, format), decode(r.value, format),
      r.headers.map(h => `${h.key}=${h.value === null ? "null" : new TextDecoder().decode(Uint8Array.from(h.value.match(/../g) || [], b => parseInt(b, 16)))}`).join(", ")]), "records"));
}

// ---- routing --------------------------------------------------------------------------------

async function route() {
  for (const t of timers) clearInterval(t);
  timers = [];
  showError(null);
  const hash = location.hash.slice(1) || "/";
  const [path, search] = hash.split("?");
  const params = new URLSearchParams(search || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const section = parts[0] || "overview";
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.route === section);
  try {
    if (section === "topics" && parts[1]) await topic(parts[1]);
    else if (section === "topics") await topics();
    else if (section === "groups" && parts[1]) await group(parts[1]);
    else if (section === "groups") await groups();
    else if (section === "messages") await messages(params);
    else await overview();
  } catch (error) {
    showError(error);
  }
}

async function start() {
  try {
    const cluster = await get("/v1/cluster");
    document.getElementById("node").textContent = `node ${cluster.node_id} · cluster ${cluster.cluster_id}`;
  } catch (error) {
    showError(error);
  }
  window.addEventListener("hashchange", route);
  await route();
}

start();
