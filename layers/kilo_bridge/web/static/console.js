// Kilo Bridge console: plain JavaScript, no build step. Every value from the API reaches the page as text
// (textContent), never as HTML: log lines and diffs are agent output.
"use strict";

const main = document.getElementById("main");
const KEY = "kb-api-key";
let adminKey = null; // the admin key lives in memory only: a reload forgets it

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

function headers(extra, admin) {
  const out = { ...(extra || {}) };
  const key = admin ? adminKey : sessionStorage.getItem(KEY);
  if (key) out["X-API-Key"] = key;
  return out;
}

// The error body's message, and each field problem it lists that the message does not already say.
function errorText(status, body) {
  const err = (body && body.error) || {};
  let text = err.message || `HTTP ${status}`;
  const extra = (Array.isArray(err.details) ? err.details : [])
    .filter((d) => d && d.message && !text.includes(d.message)).map((d) => (d.field ? `${d.field}: ${d.message}` : d.message));
  if (extra.length) text += ` (${extra.join("; ")})`;
  return text;
}

class ApiError extends Error {
  constructor(status, body) {
    super(errorText(status, body));
    this.status = status;
    this.code = body && body.error && body.error.code;
  }
}

async function api(method, path, body, admin) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}, admin) };
  if (body) init.body = JSON.stringify(body);
  let r;
  try { r = await fetch(path, init); }
  catch (e) { throw new ApiError(0, { error: { code: "unreachable", message: "The server does not answer (is it running?)." } }); }
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

// Server-sent events. Without a key, the browser's EventSource (it resumes by itself with Last-Event-ID and
// stops on the 204 that follows `end`); with one, fetch (EventSource cannot send a header, and a key never
// goes in a URL). Returns a stop function.
function events(path, on, body) {
  if (!sessionStorage.getItem(KEY) && !body) {
    const es = new EventSource(path);
    for (const name of ["status", "log", "end", "error", "delta", "done"])
      es.addEventListener(name, (e) => { if (e.data) on(name, JSON.parse(e.data)); if (name === "end") es.close(); });
    return () => es.close();
  }
  const ctl = new AbortController();
  (async () => {
    const init = { method: body ? "POST" : "GET", signal: ctl.signal,
      headers: headers(body ? { "Content-Type": "application/json" } : {}) };
    if (body) init.body = JSON.stringify(body);
    const r = await fetch(path, init);
    if (!r.ok) { on("error", (await r.json().catch(() => null)) || { error: { message: `HTTP ${r.status}` } }); return; }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "", name = "message", data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).replace(/\r$/, ""); buf = buf.slice(i + 1);
        if (line === "") { if (data.length) on(name, JSON.parse(data.join("\n"))); name = "message"; data = []; }
        else if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
    }
  })().catch((e) => { if (e.name !== "AbortError") on("error", { error: { message: String(e) } }); });
  return () => ctl.abort();
}

function keyForm(retry) {
  const form = document.getElementById("key-form").content.firstElementChild.cloneNode(true);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(KEY, new FormData(form).get("key"));
    retry();
  });
  return form;
}

// What went wrong, and for what may pass (the server or its Redis away) what to do and a way to try again.
const HINTS = {
  store_unavailable: "The server's Redis does not answer (its address is REDIS_URL, shown in the server's start banner). Start it (make redis) or fix REDIS_URL; nothing is lost meanwhile.",
  unreachable: "Start the server (make run) or check its address.",
};
function fail(err, retry) {
  if (err instanceof ApiError && err.status === 401 && retry) return keyForm(retry);
  const text = h("p", { class: "error", role: "alert" }, err.message || String(err));
  if (!(err instanceof ApiError) || !(err.status === 0 || err.status >= 500) || !retry) return text;
  return h("div", { class: "card", "data-testid": "unavailable" }, text,
    HINTS[err.code] ? h("p", {}, HINTS[err.code]) : null,
    h("button", { type: "button", onclick: () => retry() }, "Retry"));
}
const empty = (colspan, ...what) => h("tr", {}, h("td", { colspan, class: "empty" }, ...what));

const usd = (v) => (v === null || v === undefined ? "—" : `$${Number(v).toFixed(v < 1 ? 4 : 2)}`);
const ago = (iso) => {
  if (!iso) return "never";
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  return s < 90 ? `${Math.round(s)} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};
const statusText = (s) => h("span", { class: `status status-${s}` }, s);

// -- overview ----------------------------------------------------------------------------------------------
function chart(byDay) {
  const days = Object.keys(byDay).sort().slice(-14);
  const W = 640, H = 200, pad = 30, bw = (W - pad) / Math.max(days.length, 1);
  const maxSpend = Math.max(1e-9, ...days.map((d) => byDay[d].spendUsd));
  const tok = (d) => byDay[d].promptTokens + byDay[d].completionTokens;
  const maxTok = Math.max(1, ...days.map(tok));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H + 20}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Spend and tokens per day: ${days.map((d) => `${d} ${usd(byDay[d].spendUsd)}, ${tok(d)} tokens`).join("; ")}`);
  days.forEach((d, i) => {
    const x = pad + i * bw;
    for (const [cls, frac, off] of [["spend", byDay[d].spendUsd / maxSpend, 0], ["tokens", tok(d) / maxTok, bw * 0.42]]) {
      const r = document.createElementNS(ns, "rect");
      const hgt = Math.max(1, frac * (H - 10));
      Object.entries({ class: cls, x: x + off + 2, y: H - hgt, width: bw * 0.4, height: hgt }).forEach(([k, v]) => r.setAttribute(k, v));
      const t = document.createElementNS(ns, "title");
      t.textContent = cls === "spend" ? `${d}: ${usd(byDay[d].spendUsd)}` : `${d}: ${tok(d)} tokens`;
      r.append(t); svg.append(r);
    }
    const label = document.createElementNS(ns, "text");
    Object.entries({ x: x + 2, y: H + 14, "font-size": 10 }).forEach(([k, v]) => label.setAttribute(k, v));
    label.textContent = d.slice(5); svg.append(label);
  });
  return h("figure", { class: "chart card", "data-days": days.length },
    h("h2", {}, "Spend and tokens per day"), svg,
    h("figcaption", { class: "muted" }, "Dark: spend (max ", usd(maxSpend), "). Light: tokens (max ", maxTok, ")."));
}

function table(caption, head, rows) {
  return h("div", { class: "card" }, h("table", {}, h("caption", { class: "muted" }, caption),
    h("thead", {}, h("tr", {}, head.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))) : h("tr", {}, h("td", { colspan: head.length }, "none yet")))));
}

const counterRow = (name, c) => [name, c.requests, c.ok, c.failed, c.promptTokens + c.completionTokens, usd(c.spendUsd)];

async function overview() {
  const s = await api("GET", "api/kilo/stats");
  const c = s.credits, t = s.totals, runs = s.agentRuns;
  return [h("h1", {}, "Overview"),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h2", {}, "Credits"), h("div", { class: "big", "data-testid": "credits" }, usd(c.remainingUsd)),
        h("div", { class: "muted" }, "balance ", usd(c.balanceUsd), " read ", ago(c.seenAt), c.stale ? " (stale)" : "", ", spent since ", usd(c.spentSinceUsd))),
      h("div", { class: "card" }, h("h2", {}, "Spend"), h("div", { class: "big" }, usd(t.spendUsd)),
        h("div", { class: "muted" }, `${t.requests} requests, ${t.promptTokens + t.completionTokens} tokens`)),
      h("div", { class: "card" }, h("h2", {}, "Agent runs"),
        h("ul", {}, Object.entries(runs).map(([k, v]) => h("li", {}, `${k}: ${v}`))))),
    chart(s.byDay),
    table("Per model", ["model", "requests", "ok", "failed", "tokens", "spend"], Object.entries(s.byModel).map(([m, c2]) => counterRow(m, c2))),
    table("Per key", ["key", "requests", "ok", "failed", "tokens", "spend"], Object.entries(s.byKey).map(([k, c2]) => counterRow(k, c2))),
    table("Per team", ["team", "requests", "ok", "failed", "tokens", "spend"], Object.entries(s.byTeam || {}).map(([k, c2]) => counterRow(k, c2)))];
}

// -- jobs --------------------------------------------------------------------------------------------------
const STATUSES = ["", "queued", "running", "succeeded", "failed", "cancelled", "timed_out"];

const FINAL = ["succeeded", "failed", "cancelled", "timed_out"];
const seconds = (ms) => (ms === null || ms === undefined ? "—" : ms < 90000 ? `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s` : `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`);
// A running job's time so far, an ended one's duration.
const took = (j) => (j.durationMs !== null && j.durationMs !== undefined ? seconds(j.durationMs) : j.startedAt ? `${seconds(Date.now() - Date.parse(j.startedAt))} so far` : "—");

// The list refreshes only while the tab is shown: every 2 s while something changes, slower (up to 30 s) while
// nothing does, at once when the tab is shown again, never while it is hidden.
const POLL_MIN_MS = 2000, POLL_MAX_MS = 30000;
function poller(fetchOnce) {
  let delay = POLL_MIN_MS, timer = null, last = null, stopped = false;
  const tick = async () => {
    timer = null;
    if (stopped || document.hidden) return;
    let seen = last;
    try { seen = await fetchOnce(); } catch (e) { /* shown by the next successful render */ }
    delay = seen !== last ? POLL_MIN_MS : Math.min(POLL_MAX_MS, Math.round(delay * 1.5));
    last = seen;
    if (!stopped && !document.hidden) timer = setTimeout(tick, delay);
  };
  const onVisible = () => { if (!document.hidden && !timer && !stopped) { delay = POLL_MIN_MS; tick(); } };
  document.addEventListener("visibilitychange", onVisible);
  return { start: (signature) => { last = signature; timer = setTimeout(tick, delay); },
    stop: () => { stopped = true; if (timer) clearTimeout(timer); document.removeEventListener("visibilitychange", onVisible); } };
}

async function jobs(params) {
  const filter = h("select", { id: "status-filter" }, STATUSES.map((s) => h("option", { value: s, selected: s === (params.status || "") }, s || "any")));
  const body = h("tbody", {});
  const cols = ["job", "status", "outcome", "summary", "duration", "cost", "agent", "repository", "created"];
  const render = async () => {
    const q = filter.value ? `&status=${filter.value}` : "";
    const list = (await api("GET", `api/kilo/jobs?limit=50${q}`)).jobs;
    body.replaceChildren(...(list.length ? list.map((j) => {
      const r = j.result || {};
      const cells = [h("a", { href: `#/job/${j.id}` }, j.id), statusText(j.status),
        j.outcome || (j.phase ? `${j.phase} ${j.progress}%` : "—"), r.summary || "—", took(j),
        j.result ? usd(r.costUsd) : "—", j.agent, j.repoUrl, ago(j.createdAt)];
      return h("tr", { "data-job": j.id }, cells.map((c, i) => h("td", { "data-label": cols[i] }, c)));
    }) : [empty(cols.length, filter.value ? `No ${filter.value} jobs. ` : "No jobs yet. ",
      h("a", { href: "#/run" }, "Run an agent"), " to start one, or see the README's curl and kilo-bridge jobs submit.")]));
    return JSON.stringify(list.map((j) => [j.id, j.status, j.phase, j.progress]));
  };
  filter.addEventListener("change", () => { location.hash = `#/jobs${filter.value ? `?status=${filter.value}` : ""}`; });
  const polling = poller(render);
  polling.start(await render());
  cleanup = polling.stop;
  return [h("h1", {}, "Jobs"), h("label", { for: "status-filter" }, "Status"), filter,
    h("div", { class: "card" }, h("table", { class: "stack", "data-testid": "jobs" }, h("thead", {}, h("tr", {}, cols.map((x) => h("th", { scope: "col" }, x)))), body))];
}

function diffView(text) {
  const files = [];
  let cur = null;
  for (const line of text.split("\n")) {
    if (line.startsWith("diff --git ")) { cur = { name: line.replace(/^diff --git a\/(.*) b\/.*$/, "$1"), lines: [] }; files.push(cur); continue; }
    if (!cur || line.startsWith("index ") || line.startsWith("--- ") || line.startsWith("+++ ")) continue;
    cur.lines.push(line);
  }
  if (!files.length) return h("p", { class: "muted" }, "no changes");
  return files.map((f) => h("section", { class: "diff-file", "aria-label": `changes to ${f.name}` }, h("h3", {}, f.name),
    f.lines.map((l) => h("div", { class: l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : l.startsWith("@@") ? "hunk" : "" }, l || " "))));
}

// A deploy awaiting approval: what would run (the exact command, its hosts, the build's result, the diff) and
// the two buttons; a decision is taken once by the server.
function approvalCard(id, j, refresh, details) {
  const a = j.approval, waiting = j.status === "awaiting_approval" && !a.decision;
  const decide = (what) => async () => {
    approve.disabled = reject.disabled = true;
    try { await api("POST", `api/kilo/job/${encodeURIComponent(id)}/${what}`); await refresh(); } catch (e) { details.prepend(fail(e)); }
  };
  const approve = h("button", { type: "button", onclick: decide("approve"), disabled: !waiting }, "Approve deploy");
  const reject = h("button", { type: "button", class: "secondary", onclick: decide("reject"), disabled: !waiting }, "Reject");
  return h("section", { "data-testid": "approval", "aria-label": "deploy approval" }, h("h2", {}, "Deploy approval"),
    h("table", {}, h("tbody", {}, [["decision", a.decision || (waiting ? `awaiting, until ${a.expiresAt}` : "—")],
      ["command", h("code", {}, a.command)], ["hosts", (a.allow || []).join(", ") || "none"], ["build", a.build],
      ["changes", `${a.diffStat.files} files, +${a.diffStat.insertions} −${a.diffStat.deletions}`]]
      .map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))))),
    a.diff ? h("div", {}, diffView(a.diff)) : null, h("div", { class: "row" }, approve, reject));
}

async function jobPage(id) {
  const job = await api("GET", `api/kilo/job/${encodeURIComponent(id)}`);
  const status = h("span", { "data-testid": "job-status" }, statusText(job.status));
  const phase = h("span", {}, job.phase || "—"), beat = h("span", { "data-testid": "heartbeat" });
  // A heartbeat is news only while the job runs; an ended job shows when it ended instead.
  const showBeat = (d) => { beat.textContent = FINAL.includes(d.status) ? `ended ${ago(job.finishedAt || d.heartbeatAt)}` : d.status === "queued" ? "not started" : ago(d.heartbeatAt); };
  showBeat(job);
  const bar = h("progress", { max: 100, value: job.progress, "aria-label": "progress" });
  const log = h("div", { class: "log", role: "log", "aria-label": "live log", tabindex: "0", "data-testid": "log" });
  const details = h("div", {});
  const cancel = h("button", { type: "button", onclick: async () => {
    cancel.disabled = true;
    try { await api("DELETE", `api/kilo/job/${encodeURIComponent(id)}`); } catch (e) { details.prepend(fail(e)); }
  } }, "Cancel");
  const again = h("button", { type: "button", class: "secondary", onclick: () => {
    sessionStorage.setItem("kb-run-again", JSON.stringify({ repoUrl: job.repoUrl, agent: job.agent, model: job.model,
      baseBranch: job.baseBranch, dryRun: job.dryRun, maxCostUsd: job.maxCostUsd }));
    location.hash = "#/run";
  } }, "Run again");
  const showDetails = async () => {
    const j = await api("GET", `api/kilo/job/${encodeURIComponent(id)}`);
    cancel.disabled = FINAL.includes(j.status);
    Object.assign(job, { finishedAt: j.finishedAt });
    bar.value = j.progress; showBeat(j);
    const r = j.result || {};
    const timings = (j.phases || []).map((p) => `${p.phase} ${p.durationMs === null ? "(now)" : seconds(p.durationMs)}`).join(" · ");
    const parts = [h("h2", {}, "Result"), h("table", {}, h("tbody", {},
      [["outcome", j.outcome ? h("strong", { "data-testid": "outcome" }, j.outcome) : null], ["reason", j.reason], ["error", j.error], ["summary", r.summary],
        ["duration", j.durationMs !== null && j.durationMs !== undefined ? seconds(j.durationMs) : null], ["phases", timings], ["pull request", r.prUrl ? h("a", { href: r.prUrl }, r.prUrl) : null],
        ["files changed", (r.filesChanged || []).join(", ")], ["tokens", r.inputTokens !== undefined ? `${r.inputTokens} in, ${r.outputTokens} out` : null],
        ["cost", `${usd(r.costUsd || 0)} of cap ${j.maxCostUsd ? usd(j.maxCostUsd) : "none"}`]]
        .filter(([, v]) => v).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v)))))];
    if (j.approval) parts.unshift(approvalCard(id, j, showDetails, details));
    if (r.deploy) parts.push(h("h2", {}, "Deploy"), h("table", {}, h("tbody", {},
      [["url", r.deploy.url ? h("a", { href: r.deploy.url, "data-testid": "deploy-url" }, r.deploy.url) : null],
        ["exit code", String(r.deploy.exitCode)], ["duration", `${r.deploy.durationMs} ms`]]
        .filter(([, v]) => v).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))))),
      h("pre", { class: "log" }, (r.deploy.outputTail || []).join("\n")));
    const links = Object.entries(j.artifacts || {});
    if (links.length) parts.push(h("h2", {}, "Artifacts"), h("ul", {}, links.map(([name, a]) => h("li", {}, h("a", { href: a.url }, name), ` (${a.bytes} bytes)`))));
    const diff = j.artifacts && j.artifacts["diff.patch"];
    if (diff && diff.url.startsWith(location.origin)) {
      const r2 = await fetch(diff.url, { headers: headers() });
      if (r2.ok) parts.push(h("h2", {}, "Diff"), h("div", { "data-testid": "diff" }, diffView(await r2.text())));
    }
    details.replaceChildren(...parts);
  };
  cleanup = events(`api/kilo/job/${encodeURIComponent(id)}/logs`, (name, d) => {
    if (name === "status") {
      status.replaceChildren(statusText(d.status)); phase.textContent = d.phase || "—";
      bar.value = d.progress; showBeat(d);
      cancel.disabled = ["succeeded", "failed", "cancelled", "timed_out"].includes(d.status) || d.cancelRequested;
      if (d.status === "awaiting_approval") showDetails().catch((e) => details.replaceChildren(fail(e)));
    } else if (name === "log") {
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.append(h("div", { class: `log-${d.level}` }, `${d.ts.slice(11, 19)} ${d.source.padEnd(8)} ${d.msg}`));
      if (atEnd) log.scrollTop = log.scrollHeight;
    } else if (name === "end") {
      status.replaceChildren(statusText(d.status));
      log.append(h("div", { "data-testid": "log-end" }, `— job ended ${d.status}${d.reason ? `: ${d.reason}` : ""}`));
      showDetails().catch((e) => details.replaceChildren(fail(e)));
    } else if (name === "error") log.append(h("div", { class: "error" }, d.error.message));
  });
  await showDetails();
  return [h("h1", {}, `Job ${job.id}`),
    h("div", { class: "card" }, h("table", {}, h("tbody", {},
      [["status", status], ["phase", phase], ["heartbeat", beat], ["agent", job.agent], ["repository", job.repoUrl],
        ["task", h("span", { "data-testid": "task" }, job.prompt || "the agent's default task")], ["dry run", job.dryRun ? "yes: the diff is kept, nothing is pushed" : "no"],
        ["model", job.model || "default"], ["created", ago(job.createdAt)]]
        .map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))))), bar, h("div", { class: "row" }, cancel, again)),
    h("div", { class: "card" }, h("h2", {}, "Log"), log), h("div", { class: "card" }, details)];
}

// -- run an agent ------------------------------------------------------------------------------------------
async function runPage() {
  const [agents, profiles] = await Promise.all([api("GET", "api/kilo/agents").then((a) => a.agents),
    api("GET", "api/kilo/profiles").then((p) => p.profiles)]);
  const prefill = JSON.parse(sessionStorage.getItem("kb-run-again") || "{}");
  sessionStorage.removeItem("kb-run-again");
  const about = h("p", { class: "muted", id: "agent-about" });
  const prompt = h("textarea", { name: "prompt", rows: 4 });
  const select = h("select", { name: "agent", "aria-describedby": "agent-about" }, agents.map((a) => h("option", { value: a.name, selected: a.name === prefill.agent }, a.name)));
  const describe = () => { const a = agents.find((x) => x.name === select.value); about.textContent = a.description; prompt.placeholder = a.requiresPrompt ? "required for this agent" : "optional: the agent's default task"; prompt.required = a.requiresPrompt; };
  select.addEventListener("change", describe);
  const secrets = h("div", {});
  const addSecret = () => { const n = secrets.children.length; secrets.append(h("div", { class: "row" },
    h("label", {}, "Name", h("input", { name: `env-name-${n}`, pattern: "[A-Z_][A-Z0-9_]*", placeholder: "GITHUB_TOKEN" })),
    h("label", {}, "Value", h("input", { name: `env-value-${n}`, type: "password", autocomplete: "off" })))); };
  addSecret();
  const out = h("div", { role: "status" });
  const form = h("form", { class: "card" },
    h("label", {}, "Agent", select), about,
    h("label", {}, "Repository URL", h("input", { name: "repoUrl", required: true, value: prefill.repoUrl || "", placeholder: "https://github.com/acme/widgets.git" })),
    h("label", {}, "Prompt (or the agent's default task)", prompt),
    h("label", {}, "Model (optional)", h("input", { name: "model", value: prefill.model || "" })),
    h("label", {}, "Base branch (optional)", h("input", { name: "baseBranch", value: prefill.baseBranch || "" })),
    h("label", {}, "Cost cap in USD (optional)", h("input", { name: "maxCostUsd", type: "number", step: "0.01", min: "0.01", value: prefill.maxCostUsd || "" })),
    h("label", {}, h("input", { name: "dryRun", type: "checkbox", checked: prefill.dryRun !== false }), " Dry run (keep the diff; no push, no pull request)"),
    h("label", {}, "Saved profile (optional: its variables; the secrets below win)", h("select", { name: "profile" }, h("option", { value: "" }, profiles.length ? "none" : "none saved yet (Profiles)"),
      profiles.map((p) => h("option", { value: p.name, selected: p.name === prefill.profile }, `${p.name} (${p.variables.join(", ")})`)))),
    h("fieldset", {}, h("legend", {}, "Secrets for the job (sealed on the server, never shown again)"), secrets,
      h("button", { type: "button", class: "secondary", onclick: addSecret }, "Add a secret")),
    h("p", {}, h("button", { type: "submit" }, "Start the job")), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form), body = { agent: f.get("agent"), repoUrl: f.get("repoUrl"), dryRun: f.get("dryRun") === "on" };
    for (const k of ["prompt", "model", "baseBranch", "profile"]) if (f.get(k)) body[k] = f.get(k);
    if (f.get("maxCostUsd")) body.maxCostUsd = Number(f.get("maxCostUsd"));
    const env = {};
    for (let i = 0; i < secrets.children.length; i++) if (f.get(`env-name-${i}`)) env[f.get(`env-name-${i}`)] = f.get(`env-value-${i}`);
    if (Object.keys(env).length) body.profileEnv = env;
    form.querySelectorAll("input[type=password]").forEach((i) => { i.value = ""; }); // typed once, gone from the page
    try { const r = await api("POST", "api/kilo/run-agent", body); location.hash = `#/job/${r.jobId}`; }
    catch (err) { out.replaceChildren(fail(err)); }
  });
  describe();
  return [h("h1", {}, "Run an agent"), form];
}

// -- playground --------------------------------------------------------------------------------------------
async function playground() {
  const answer = h("pre", { "data-testid": "answer", "aria-live": "polite" }), meta = h("p", { class: "muted" });
  // The gateway's models (GET /v1/models) to pick from; typing another id works too.
  let models = [];
  try { models = ((await api("GET", "v1/models")).data || []).map((m) => m.id).sort(); } catch (e) { /* typed by hand then */ }
  const stop = h("button", { type: "button", class: "secondary", disabled: true }, "Stop");
  const generate = h("button", { type: "submit" }, "Generate");
  const form = h("form", { class: "card" },
    h("label", {}, "System prompt (optional)", h("textarea", { name: "system", rows: 2 })),
    h("label", {}, "Prompt", h("textarea", { name: "prompt", rows: 4, required: true })),
    h("label", {}, `Model (optional; ${models.length} from the gateway)`, h("input", { name: "model", list: "models", autocomplete: "off" })),
    h("datalist", { id: "models" }, models.map((m) => h("option", { value: m }))),
    h("div", { class: "row" }, generate, stop));
  const ended = () => { stop.disabled = true; generate.disabled = false; };
  stop.addEventListener("click", () => { if (cleanup) { cleanup(); cleanup = null; } ended(); meta.textContent = "stopped"; });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(form), body = { prompt: f.get("prompt") };
    if (f.get("model")) body.model = f.get("model");
    if (f.get("system")) body.system = f.get("system");
    answer.textContent = ""; meta.textContent = "";
    if (cleanup) cleanup();
    stop.disabled = false; generate.disabled = true;
    cleanup = events("api/kilo/generate-stream", (name, d) => {
      if (name === "delta") answer.textContent += d.text;
      else if (name === "done") { ended(); meta.textContent = `${d.model}: ${d.usage.totalTokens} tokens, ${usd(d.usage.costUsd)}`; }
      else if (name === "error") { ended(); meta.replaceChildren(h("span", { class: "error" }, d.error.message)); }
    }, body);
  });
  return [h("h1", {}, "Playground"), form, h("div", { class: "card" }, h("h2", {}, "Answer"), answer, meta)];
}

// -- admin login (recorded in the audit log) ----------------------------------------------------------------
async function adminLogin(candidate) {
  adminKey = candidate;
  try { await api("POST", "api/kilo/admin/login", null, true); }
  catch (e) { if (e.status === 401) adminKey = null; }
  route();
}

// -- audit log (admin) -------------------------------------------------------------------------------------
async function auditPage(params) {
  if (!adminKey) {
    const form = h("form", { class: "card" }, h("h2", {}, "Admin key"),
      h("p", {}, "The audit log takes the server's ADMIN_API_KEY. It is kept in memory only."),
      h("label", {}, "Admin key", h("input", { name: "admin", type: "password", autocomplete: "off", required: true })),
      h("button", { type: "submit" }, "Continue"));
    form.addEventListener("submit", (e) => { e.preventDefault(); adminLogin(new FormData(form).get("admin")); });
    return [h("h1", {}, "Audit log"), form];
  }
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v));
  let page;
  try { page = await api("GET", `api/kilo/admin/audit?${query}`, null, true); }
  catch (e) { if (e.status === 401) adminKey = null; throw e; }
  const filter = h("form", { class: "card row", "data-testid": "audit-filter" },
    h("label", {}, "Action", h("input", { name: "action", value: params.action || "", placeholder: "key. or key.create" })),
    h("label", {}, "Actor", h("input", { name: "actor", value: params.actor || "", placeholder: "admin or key:<id>" })),
    h("label", {}, "Target", h("input", { name: "target", value: params.target || "" })),
    h("button", { type: "submit" }, "Filter"));
  filter.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new URLSearchParams([...new FormData(filter)].filter(([, v]) => v));
    location.hash = `#/audit${f.toString() ? `?${f}` : ""}`;
  });
  const rows = page.records.map((r) => [r.at, r.actor, r.action, r.target, r.fields.join(", "), r.ip, r.outcome]);
  const more = page.nextCursor ? h("a", { href: `#/audit?${new URLSearchParams({ ...params, cursor: page.nextCursor })}` }, "Older") : "";
  return [h("h1", {}, "Audit log"), filter,
    table("Administrative changes, newest first", ["when (UTC)", "who", "what", "target", "fields sent", "from", "outcome"], rows), more];
}

// -- keys (admin) ------------------------------------------------------------------------------------------
async function keysPage() {
  const health = await fetch("healthz").then((r) => r.json()).catch(() => null);
  if (health && health.adminApi === false) {
    return [h("h1", {}, "Keys"), h("div", { class: "card", "data-testid": "admin-off" },
      h("h2", {}, "The admin API is off on this server"),
      h("p", {}, "Keys are made where the server runs, straight in its Redis:"),
      h("pre", {}, "kilo-bridge keys create --name ci --budget-usd 10 --rpm 60   # prints the key once\nkilo-bridge keys list\nkilo-bridge keys revoke <id>"),
      h("p", { class: "muted" }, "(.venv/bin/kilo-bridge in the checkout.) To manage keys here instead, set ADMIN_API_KEY and restart the server."))];
  }
  if (!adminKey) {
    const form = h("form", { class: "card" }, h("h2", {}, "Admin key"),
      h("p", {}, "Managing keys takes the server's ADMIN_API_KEY. It is kept in memory only."),
      h("label", {}, "Admin key", h("input", { name: "admin", type: "password", autocomplete: "off", required: true })),
      h("button", { type: "submit" }, "Continue"));
    form.addEventListener("submit", (e) => { e.preventDefault(); adminLogin(new FormData(form).get("admin")); });
    return [h("h1", {}, "Keys"), form];
  }
  let list;
  try { list = (await api("GET", "api/kilo/admin/keys", null, true)).keys; }
  catch (e) { if (e.status === 401) adminKey = null; throw e; }
  const shown = h("div", { role: "status" });
  const form = h("form", { class: "card" }, h("h2", {}, "Create a key"),
    h("div", { class: "row" },
      h("label", {}, "Name", h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_\\-]{1,64}" })),
      h("label", {}, "Budget USD", h("input", { name: "budgetUsd", type: "number", step: "0.01", min: "0.01" })),
      h("label", {}, "Budget resets", h("select", { name: "budgetPeriod" }, ["", "day", "week", "month"].map((p) => h("option", { value: p }, p || "never")))),
      h("label", {}, "Models (comma-separated; provider/*)", h("input", { name: "models", placeholder: "any" })),
      h("label", {}, "Team", h("input", { name: "team", pattern: "[A-Za-z0-9_\\-]{1,64}" })),
      h("label", {}, "Requests/min", h("input", { name: "rpm", type: "number", min: "1" })),
      h("label", {}, "Tokens/min", h("input", { name: "tpm", type: "number", min: "1" })),
      h("label", {}, "Concurrent jobs", h("input", { name: "maxJobs", type: "number", min: "1" }))),
    h("button", { type: "submit" }, "Create"), shown);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form), body = { name: f.get("name") };
    for (const k of ["budgetUsd", "rpm", "tpm", "maxJobs"]) if (f.get(k)) body[k] = Number(f.get(k));
    if (f.get("budgetPeriod")) body.budgetPeriod = f.get("budgetPeriod");
    if (f.get("team")) body.team = f.get("team");
    if (f.get("models")) body.models = f.get("models").split(",").map((m) => m.trim()).filter(Boolean);
    try {
      const k = await api("POST", "api/kilo/admin/keys", body, true);
      await route();
      main.querySelector("[data-testid=new-key]")?.remove();
      main.prepend(h("div", { class: "card", "data-testid": "new-key" }, h("h2", {}, `Key ${k.name} created`),
        h("p", {}, "Copy it now: it is not shown again."), h("div", { class: "secret" }, k.key)));
    } catch (err) { shown.replaceChildren(fail(err)); }
  });
  const rows = list.map((k) => [k.id, k.name, k.revoked ? "revoked" : "active", usd(k.spentUsd),
    k.budgetUsd ? `${usd(k.budgetUsd)}${k.budgetPeriod ? ` / ${k.budgetPeriod} (${usd(k.spentThisPeriodUsd)} used)` : ""}` : "—",
    k.revoked ? "" : h("button", { type: "button", class: "secondary", "aria-label": `Revoke ${k.name}`, onclick: async () => {
      await api("DELETE", `api/kilo/admin/keys/${encodeURIComponent(k.id)}`, null, true); route(); } }, "Revoke")]);
  return [h("h1", {}, "Keys"), form, table("API keys", ["id", "name", "state", "spend", "budget", ""], rows)];
}

// -- my key: its limits, budget period and usage (GET /api/kilo/me) --------------------------------------
async function mePage() {
  const me = await api("GET", "api/kilo/me"), k = me.key;
  const budget = k.budgetUsd === null ? "none" : `${usd(k.budgetUsd)}${k.budgetPeriod ? ` per ${k.budgetPeriod}` : " in all"}`;
  const rows = Object.entries(me.usage).flatMap(([day, models]) =>
    Object.entries(models).map(([m, f]) => [day, m, f.requests, f.tokens, usd(f.spendUsd)]));
  return [h("h1", {}, `My key: ${k.name}`),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h2", {}, "Budget"), h("div", { class: "big", "data-testid": "me-budget" }, budget),
        k.budgetPeriod ? h("div", { class: "muted", "data-testid": "me-period" }, "spent this period ", usd(k.spentThisPeriodUsd),
          ", resets ", k.periodResetsAt) : h("div", { class: "muted" }, "a lifetime budget")),
      h("div", { class: "card" }, h("h2", {}, "Spent"), h("div", { class: "big", "data-testid": "me-spent" }, usd(k.spentUsd)),
        h("div", { class: "muted" }, usd(k.reservedUsd), " held by ", `${me.openCalls} calls and ${me.unfinishedJobs.length} jobs in flight`)),
      h("div", { class: "card" }, h("h2", {}, "Limits"), h("ul", {},
        h("li", { "data-testid": "me-models" }, "models: ", k.models ? k.models.join(", ") : "any"),
        h("li", {}, `requests/min: ${k.rpm ?? "—"}`), h("li", {}, `tokens/min: ${k.tpm ?? "—"}`),
        h("li", {}, `concurrent jobs: ${k.maxJobs ?? "—"}`)))),
    table("Usage by day and model (UTC)", ["day", "model", "requests", "tokens", "spend"], rows),
    table("Unfinished jobs", ["job", "status", "agent", "created"],
      me.unfinishedJobs.map((j) => [h("a", { href: `#/job/${j.id}` }, j.id), statusText(j.status), j.agent, j.createdAt]))];
}

// -- profiles, triggers, schedules (the caller's own saved things) ----------------------------------------
// A page's message line (role=status: read out when it changes); an error inside it is an alert.
function notice() { return h("div", { role: "status", "data-testid": "message" }); }
const say = (out, text) => out.replaceChildren(h("p", {}, text));
const confirmed = (what) => window.confirm(`Delete ${what}? This cannot be undone.`);
// A time as the API gives it, in the schedule's own zone: "2026-12-04 03:00 +01:00".
const localTime = (iso) => (iso ? `${iso.slice(0, 16).replace("T", " ")} ${(iso.match(/([+-]\d\d:\d\d|Z)$/) || [""])[0]}`.trim() : "—");
const opt = (v) => (v === null || v === undefined || v === "" ? "—" : v);

// Name/value rows for variables; the values are password inputs, emptied once sent.
function variableRows(legend, names) {
  const rows = h("div", {});
  const add = (name) => { const n = rows.children.length; rows.append(h("div", { class: "row" },
    h("label", {}, `Variable name ${n + 1}`, h("input", { name: `var-name-${n}`, pattern: "[A-Z_][A-Z0-9_]*", placeholder: "GITHUB_TOKEN", value: name || "" })),
    h("label", {}, `Value ${n + 1}`, h("input", { name: `var-value-${n}`, type: "password", autocomplete: "off" })))); };
  (names && names.length ? names : [""]).forEach(add);
  const el = h("fieldset", {}, h("legend", {}, legend), rows,
    h("button", { type: "button", class: "secondary", onclick: () => add("") }, "Add a variable"));
  const read = (form) => {
    const f = new FormData(form), env = {};
    for (let i = 0; i < rows.children.length; i++) if (f.get(`var-name-${i}`)) env[f.get(`var-name-${i}`)] = f.get(`var-value-${i}`);
    form.querySelectorAll("input[type=password]").forEach((i) => { i.value = ""; }); // typed once, gone from the page
    return env;
  };
  return { el, read };
}

async function profilesPage() {
  const out = notice(), body = h("tbody", {}), rotating = h("div", {});
  const render = async () => {
    const list = (await api("GET", "api/kilo/profiles")).profiles;
    body.replaceChildren(...(list.length ? list.map((p) => h("tr", {},
      h("td", {}, p.name), h("td", {}, p.variables.join(", ")), h("td", {}, ago(p.updatedAt)),
      h("td", {}, h("div", { class: "row" },
        h("button", { type: "button", class: "secondary", "aria-label": `Rotate ${p.name}`, onclick: () => rotateForm(p) }, "Rotate"),
        h("button", { type: "button", class: "secondary", "aria-label": `Delete ${p.name}`, onclick: async () => {
          if (!confirmed(`profile ${p.name}`)) return;
          try { await api("DELETE", `api/kilo/profiles/${encodeURIComponent(p.name)}`); await render(); say(out, `Profile ${p.name} deleted.`); }
          catch (err) { out.replaceChildren(fail(err)); }
        } }, "Delete"))))) : [empty(4, "No profiles yet. Save one below: a run, trigger or schedule then names it instead of carrying secrets.")]));
  };
  const rotateForm = (p) => {
    const vars = variableRows("New variables (they replace all the old ones; one left out is removed)", p.variables);
    const form = h("form", { class: "card", "aria-label": `Rotate profile ${p.name}` }, h("h2", {}, `Rotate ${p.name}`), vars.el,
      h("div", { class: "row" }, h("button", { type: "submit" }, "Replace the values"),
        h("button", { type: "button", class: "secondary", onclick: () => rotating.replaceChildren() }, "Cancel")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api("PUT", `api/kilo/profiles/${encodeURIComponent(p.name)}`, { env: vars.read(form) });
        rotating.replaceChildren(); await render(); say(out, `Profile ${p.name} rotated.`);
      } catch (err) { out.replaceChildren(fail(err)); }
    });
    rotating.replaceChildren(form);
    form.querySelector("input[type=password]").focus();
  };
  const vars = variableRows("Variables (sealed on the server, never shown again)");
  const form = h("form", { class: "card" }, h("h2", {}, "Save a profile"),
    h("label", {}, "Profile name", h("input", { name: "name", required: true, pattern: "[a-z0-9][a-z0-9._\\-]{0,63}", placeholder: "deploy-bot" })),
    vars.el, h("p", {}, h("button", { type: "submit" }, "Save the profile")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = new FormData(form).get("name");
    try { await api("POST", "api/kilo/profiles", { name, env: vars.read(form) }); form.reset(); await render(); say(out, `Profile ${name} saved.`); }
    catch (err) { out.replaceChildren(fail(err)); }
  });
  await render();
  return [h("h1", {}, "Profiles"),
    h("p", { class: "muted" }, "Named job variables a run, trigger or schedule uses as \"profile\". Only the variable names are ever shown."),
    out, form, rotating,
    h("div", { class: "card" }, h("table", {}, h("caption", { class: "muted" }, "This key's profiles"),
      h("thead", {}, h("tr", {}, ["name", "variables", "updated", ""].map((x) => h("th", { scope: "col" }, x)))), body))];
}

async function triggersPage() {
  const [agents, profiles] = await Promise.all([api("GET", "api/kilo/agents"), api("GET", "api/kilo/profiles")]);
  const out = notice(), list = h("div", {}), created = h("div", {});
  const deliveries = async (t) => {
    const d = (await api("GET", `api/kilo/triggers/${encodeURIComponent(t.id)}/deliveries`)).deliveries.slice(0, 5);
    if (!d.length) return h("p", { class: "muted" }, "no deliveries yet");
    return h("table", {}, h("caption", { class: "muted" }, "Last deliveries"),
      h("thead", {}, h("tr", {}, ["when", "outcome", "job", "job status"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, d.map((x) => h("tr", {}, h("td", {}, ago(x.at)), h("td", {}, x.code ? `${x.outcome} (${x.code})` : x.outcome),
        h("td", {}, x.jobId ? h("a", { href: `#/job/${x.jobId}` }, x.jobId) : "—"), h("td", {}, x.jobStatus ? statusText(x.jobStatus) : "—")))));
  };
  const render = async () => {
    const ts = (await api("GET", "api/kilo/triggers")).triggers;
    const cards = await Promise.all(ts.map(async (t) => h("section", { class: "card", "aria-label": `trigger ${t.name}` },
      h("h2", {}, t.name),
      h("table", {}, h("tbody", {}, [["agent", t.agent], ["repository", t.repoUrl], ["URL", h("code", {}, t.url)], ["profile", opt(t.profile)],
        ["cost cap", t.maxCostUsd ? usd(t.maxCostUsd) : "—"], ["dry run", t.dryRun ? "yes" : "no"], ["prompt template", h("pre", {}, t.promptTemplate || "(the agent's default task)")],
        ["created", ago(t.createdAt)]].map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))))),
      await deliveries(t),
      h("div", { class: "row" },
      h("button", { type: "button", class: "secondary", "aria-label": `Rotate the secret of ${t.name}`, onclick: async () => {
        if (!window.confirm(`A new signing secret for ${t.name}? Its senders are refused until they use the new one.`)) return;
        try { showSecret(await api("POST", `api/kilo/triggers/${encodeURIComponent(t.id)}/rotate`), `New secret for ${t.name}`); out.replaceChildren(); }
        catch (err) { out.replaceChildren(fail(err)); }
      } }, "Rotate the secret"),
      h("button", { type: "button", class: "secondary", "aria-label": `Delete ${t.name}`, onclick: async () => {
        if (!confirmed(`trigger ${t.name}`)) return;
        try { await api("DELETE", `api/kilo/triggers/${encodeURIComponent(t.id)}`); created.replaceChildren(); await render(); say(out, `Trigger ${t.name} deleted.`); }
        catch (err) { out.replaceChildren(fail(err)); }
      } }, "Delete")))));
    list.replaceChildren(...(cards.length ? cards : [h("p", { class: "card muted empty" }, "No triggers yet. Create one above: its signed URL lets a CI system, an alert or a chat bot start a run.")]));
  };
  // The URL and secret of a trigger just created or rotated: on the page until it is left or reloaded.
  const showSecret = (t, title) => created.replaceChildren(h("section", { class: "card", "data-testid": "new-trigger", "aria-label": "new trigger secret" },
    h("h2", {}, title),
    h("p", {}, "Copy the signing secret now: it is not shown again (reloading this page forgets it)."),
    h("table", {}, h("tbody", {},
      h("tr", {}, h("th", { scope: "row" }, "URL"), h("td", {}, h("div", { class: "secret", "data-testid": "trigger-url" }, t.url))),
      h("tr", {}, h("th", { scope: "row" }, "secret"), h("td", {}, h("div", { class: "secret", "data-testid": "trigger-secret" }, t.secret))))),
    h("p", { class: "muted" }, "Sign each call: X-Kilo-Timestamp (Unix seconds) and X-Kilo-Signature: sha256=<hex HMAC-SHA256 of \"<timestamp>.<body>\" with the secret>.")));
  const form = h("form", { class: "card" }, h("h2", {}, "Create a trigger"),
    h("label", {}, "Trigger name", h("input", { name: "name", required: true, maxlength: 100, placeholder: "CI failures" })),
    h("label", {}, "Agent", h("select", { name: "agent" }, agents.agents.map((a) => h("option", { value: a.name }, a.name)))),
    h("label", {}, "Repository URL", h("input", { name: "repoUrl", required: true, placeholder: "https://github.com/acme/widgets.git" })),
    h("label", {}, "Prompt template ({{ body.field }} from the call's JSON body)", h("textarea", { name: "promptTemplate", rows: 3 })),
    h("label", {}, "Profile (optional)", h("select", { name: "profile" }, h("option", { value: "" }, "none"),
      profiles.profiles.map((p) => h("option", { value: p.name }, p.name)))),
    h("label", {}, "Cost cap per run in USD (optional)", h("input", { name: "maxCostUsd", type: "number", step: "0.01", min: "0.01" })),
    h("label", {}, h("input", { name: "dryRun", type: "checkbox" }), " Dry run (each run keeps its diff; no push, no pull request)"),
    h("p", {}, h("button", { type: "submit" }, "Create the trigger")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form), body = { name: f.get("name"), agent: f.get("agent"), repoUrl: f.get("repoUrl"), promptTemplate: f.get("promptTemplate"), dryRun: f.get("dryRun") === "on" };
    if (f.get("profile")) body.profile = f.get("profile");
    if (f.get("maxCostUsd")) body.maxCostUsd = Number(f.get("maxCostUsd"));
    try {
      const t = await api("POST", "api/kilo/triggers", body);
      form.reset(); out.replaceChildren();
      showSecret(t, `Trigger ${t.name} created`);
      await render();
    } catch (err) { out.replaceChildren(fail(err)); }
  });
  await render();
  return [h("h1", {}, "Triggers"),
    h("p", { class: "muted" }, "A signed URL that starts a run from a CI system, an alert or a chat bot. Each run is this key's: its budget applies."),
    out, created, form, list];
}

async function schedulesPage() {
  const [agents, profiles] = await Promise.all([api("GET", "api/kilo/agents"), api("GET", "api/kilo/profiles")]);
  const out = notice(), body = h("tbody", {});
  const act = async (text, fn) => { try { await fn(); await render(); say(out, text); } catch (err) { out.replaceChildren(fail(err)); } };
  const render = async () => {
    const list = (await api("GET", "api/kilo/schedules")).schedules;
    body.replaceChildren(...(list.length ? list.map((s) => {
      const path = `api/kilo/schedules/${encodeURIComponent(s.id)}`;
      const paused = s.state === "paused";
      return h("tr", { "data-schedule": s.id }, h("td", {}, s.name), h("td", {}, h("code", {}, s.cron)), h("td", {}, s.timezone),
        h("td", {}, s.run.agent + (s.run.dryRun ? " (dry run)" : "")), h("td", {}, s.run.repoUrl),
        h("td", {}, localTime(s.nextRunAt)),
        h("td", { "data-testid": "schedule-state" }, h("span", { class: `status status-${s.state}` }, s.state)),
        h("td", {}, h("div", { class: "row" },
          h("button", { type: "button", class: "secondary", "aria-label": `${paused ? "Resume" : "Pause"} ${s.name}`,
            onclick: () => act(`Schedule ${s.name} ${paused ? "resumed" : "paused"}.`, () => api("POST", `${path}/${paused ? "resume" : "pause"}`)) },
          paused ? "Resume" : "Pause"),
          h("button", { type: "button", class: "secondary", "aria-label": `Delete ${s.name}`,
            onclick: () => { if (confirmed(`schedule ${s.name}`)) act(`Schedule ${s.name} deleted.`, () => api("DELETE", path)); } }, "Delete"))));
    }) : [empty(8, "No schedules yet. Create one above, e.g. a nightly dependency update (0 3 * * *).")]));
  };
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const form = h("form", { class: "card" }, h("h2", {}, "Schedule a run"),
    h("label", {}, "Schedule name", h("input", { name: "name", required: true, maxlength: 100, placeholder: "nightly dependency update" })),
    h("div", { class: "row" },
      h("label", {}, "Cron (minute hour day month weekday; at most every 10 minutes)", h("input", { name: "cron", required: true, placeholder: "0 3 * * *" })),
      h("label", {}, "Time zone", h("input", { name: "timezone", required: true, value: zone }))),
    h("label", {}, "Agent", h("select", { name: "agent" }, agents.agents.map((a) => h("option", { value: a.name }, a.name)))),
    h("label", {}, "Repository URL", h("input", { name: "repoUrl", required: true, placeholder: "https://github.com/acme/widgets.git" })),
    h("label", {}, "Prompt (optional: the agent's default task)", h("textarea", { name: "prompt", rows: 3 })),
    h("label", {}, "Profile (optional)", h("select", { name: "profile" }, h("option", { value: "" }, "none"),
      profiles.profiles.map((p) => h("option", { value: p.name }, p.name)))),
    h("label", {}, "Cost cap per run in USD (optional)", h("input", { name: "maxCostUsd", type: "number", step: "0.01", min: "0.01" })),
    h("label", {}, h("input", { name: "dryRun", type: "checkbox" }), " Dry run (each run keeps its diff; no push, no pull request)"),
    h("p", {}, h("button", { type: "submit" }, "Create the schedule")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form), run = { agent: f.get("agent"), repoUrl: f.get("repoUrl"), dryRun: f.get("dryRun") === "on" };
    if (f.get("prompt")) run.prompt = f.get("prompt");
    if (f.get("profile")) run.profile = f.get("profile");
    if (f.get("maxCostUsd")) run.maxCostUsd = Number(f.get("maxCostUsd"));
    const name = f.get("name");
    await act(`Schedule ${name} created.`, async () => {
      await api("POST", "api/kilo/schedules", { name, cron: f.get("cron"), timezone: f.get("timezone"), run });
      form.reset();
    });
  });
  await render();
  return [h("h1", {}, "Schedules"), h("p", { class: "muted" }, "Agent runs on a cron, started as this key (its budget applies)."), out, form,
    h("div", { class: "card" }, h("table", {}, h("caption", { class: "muted" }, "This key's schedules"),
      h("thead", {}, h("tr", {}, ["name", "cron", "time zone", "agent", "repository", "next run", "state", ""].map((x) => h("th", { scope: "col" }, x)))), body))];
}

// -- routing -----------------------------------------------------------------------------------------------
let cleanup = null;
async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  const parts = path.split("/").filter(Boolean);
  document.querySelectorAll("header nav a").forEach((a) => a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${parts[0] === "job" ? "jobs" : parts[0]}`));
  document.querySelectorAll("header nav a[aria-current]").forEach((a) => a.setAttribute("aria-current", "page"));
  document.getElementById("auth-state").textContent = sessionStorage.getItem(KEY) ? "using an API key" : "";
  const pages = { overview, jobs: () => jobs(params), job: () => jobPage(parts[1]), run: runPage, playground, keys: keysPage, me: mePage, audit: () => auditPage(params),
    profiles: profilesPage, triggers: triggersPage, schedules: schedulesPage };
  const page = pages[parts[0]] || overview;
  try { main.replaceChildren(...[await page()].flat()); }
  catch (e) { main.replaceChildren(fail(e, route)); }
}
window.addEventListener("hashchange", route);
route();
