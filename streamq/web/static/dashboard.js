// streamq dashboard: plain JavaScript, no build step, no third-party code.
//
// The page at "/" is a static shell. This script reads the API token from the URL fragment
// (#token=..., never sent to the server) or the login field, keeps it in sessionStorage and
// calls the JSON API with "Authorization: Bearer". A later change of the fragment (a new
// #token=... link pasted into the same tab) is picked up without reloading the page. Data is
// put into the page with textContent / DOM nodes only, never as HTML, so a job payload cannot
// inject markup. Every list is paged on the server (offset/limit, or a cursor for the DLQ).
"use strict";

(function () {
  const TOKEN_KEY = "streamq.token";
  const REFRESH_MS = 5000;
  const COUNTS = ["waiting", "active", "delayed", "completed", "failed", "dead"];
  // Retained counts that have a lifetime counter beside them (GET /api/queues).
  const ALL_TIME = { completed: "completed_total", failed: "failed_total" };
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Rows per page of each list.
  const PAGE = { queues: 20, jobs: 50, dead: 50, schedules: 50, workers: 20 };

  const view = {
    queue: null, // selected queue name
    state: "waiting", // selected tab
    open: new Set(), // expanded job ids / dead ids in the list
    offset: { queues: 0, jobs: 0, schedules: 0, workers: 0 }, // first row of each list
    deadCursors: ["-"], // DLQ: the "after" cursor of each page seen so far; last = current
    clockOffset: 0, // Redis clock minus local clock, ms
    timer: null,
    busy: false, // a refresh is running
    again: false, // another refresh was asked for meanwhile
  };

  // ------------------------------------------------------------------ helpers

  const $ = (id) => document.getElementById(id);

  // Children as DOM nodes: nested arrays flattened, null/undefined/false dropped, anything
  // else as a text node. replaceChildren() would print "null" or "[object HTML...]" instead.
  function nodes(children) {
    const out = [];
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      out.push(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return out;
  }

  function fill(node, ...children) {
    node.replaceChildren(...nodes(children));
    return node;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...nodes(children));
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "–";
    const a = Math.abs(ms);
    const sign = ms < 0 ? "-" : "";
    if (a < 1000) return sign + Math.round(a) + " ms";
    if (a < 60000) return sign + (a / 1000).toFixed(a < 10000 ? 1 : 0) + " s";
    if (a < 3600000) return sign + Math.floor(a / 60000) + " min " + Math.round((a % 60000) / 1000) + " s";
    if (a < 86400000) return sign + Math.floor(a / 3600000) + " h " + Math.round((a % 3600000) / 60000) + " min";
    return sign + (a / 86400000).toFixed(1) + " d";
  }

  const redisNow = () => Date.now() + view.clockOffset;
  const ago = (ms) => (ms ? duration(redisNow() - ms) + " ago" : "–");
  const inTime = (ms) => (ms ? "in " + duration(ms - redisNow()) : "–");
  const stamp = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
  const pretty = (value) => (value === undefined ? "–" : JSON.stringify(value, null, 2));
  const enc = encodeURIComponent;
  const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : String(n));

  function badge(text, kind) {
    return el("span", { class: "badge " + (kind || ""), text });
  }

  function message(text, kind) {
    const box = $("message");
    box.textContent = text;
    box.className = "message " + (kind || "");
    box.hidden = !text;
  }

  // ------------------------------------------------------------------ token and API

  // Keep a #token=... from the fragment and take it out of the address bar (and history).
  // True when the fragment carried a token.
  function takeTokenFromFragment() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    const token = (params.get("token") || "").trim();
    if (!token) return false;
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", window.location.pathname + window.location.search);
    return true;
  }

  class Unauthorized extends Error {}

  class ApiError extends Error {
    constructor(text, status) {
      super(text);
      this.status = status;
    }
  }

  async function api(method, path) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch("api/" + path, {
      method,
      headers,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (response.status === 401) throw new Unauthorized("the API refused the token");
    if (!response.ok) {
      throw new ApiError((body && body.error) || "HTTP " + response.status, response.status);
    }
    return body;
  }

  function showLogin(error) {
    stopTimer();
    $("app").hidden = true;
    $("logout").hidden = true;
    $("refresh").hidden = true;
    $("auto-wrap").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = error || "";
    $("login-error").hidden = !error;
    $("status").textContent = "not signed in";
    $("token").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    $("refresh").hidden = false;
    $("auto-wrap").hidden = false;
  }

  // ------------------------------------------------------------------ pages

  // "51–100 of 1,234" with Prev / Next buttons. `first` is the 0-based index of the first
  // row shown, `count` how many are shown; `prev` / `next` are callbacks, or null at an end.
  function pager(name, first, count, total, prev, next) {
    const range = count ? `${fmt(first + 1)}–${fmt(first + count)} of ${fmt(total)}` : `0 of ${fmt(total)}`;
    return el("div", { class: "pager", dataset: { pager: name } },
      el("span", { class: "range", text: range }),
      el("button", { type: "button", class: "prev", text: "‹ Prev", disabled: !prev, onclick: prev }),
      el("button", { type: "button", class: "next", text: "Next ›", disabled: !next, onclick: next }),
    );
  }

  // A pager for an offset/limit list: `page` is the API's page object.
  function offsetPager(name, page, count) {
    const go = (offset) => () => {
      view.offset[name] = offset;
      view.open.clear();
      refresh();
    };
    return pager(name, page.offset, count, page.total,
      page.prev_offset === null ? null : go(page.prev_offset),
      page.next_offset === null ? null : go(page.next_offset));
  }

  function resetPages(lists) {
    for (const name of lists) {
      if (name === "dead") view.deadCursors = ["-"];
      else view.offset[name] = 0;
    }
  }

  // A table inside a box that scrolls sideways on a narrow screen, not the whole page.
  const scroller = (table) => el("div", { class: "scroll" }, table);

  // A list table that turns into one card per row on a narrow screen (dashboard.css): each
  // cell is labelled with its column's heading, since the heading row is then hidden.
  function stacked(table) {
    const heads = [...table.tHead.rows[0].cells].map((th) => th.textContent);
    for (const row of table.tBodies[0].rows) {
      if (row.classList.contains("detailrow")) continue;
      [...row.cells].forEach((cell, i) => {
        if (heads[i]) cell.dataset.label = heads[i];
      });
    }
    table.classList.add("stack");
    return scroller(table);
  }

  // ------------------------------------------------------------------ queues

  function sparkline(minutes) {
    const w = 180;
    const h = 28;
    const max = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
    const bw = w / minutes.length;
    const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "spark", role: "img" });
    const total = minutes.reduce((s, m) => s + m.completed, 0);
    chart.append(svg("title", {}, `${total} completed in the last hour`));
    minutes.forEach((m, i) => {
      const ch = (m.completed / max) * (h - 2);
      const fh = (m.failed / max) * (h - 2);
      if (ch > 0) chart.append(svg("rect", { x: i * bw, y: h - ch, width: bw * 0.8, height: ch, class: "ok" }));
      if (fh > 0) chart.append(svg("rect", { x: i * bw, y: h - ch - fh, width: bw * 0.8, height: fh, class: "bad" }));
    });
    return el("span", { class: "sparkwrap" }, chart, el("span", { class: "sparktotal", text: total + " / h" }));
  }

  // A count cell; retained counts (completed, failed) show the lifetime counter beside them.
  function countCell(q, name) {
    const total = ALL_TIME[name] ? q[ALL_TIME[name]] : null;
    return el("td", {
      class: "num" + (name === "dead" && q.dead ? " alert" : ""),
      dataset: { count: name },
      title: total === null ? null : `${fmt(q[name])} retained record(s) of ${fmt(total)} ${name} all time`,
    },
    el("span", { class: "n", text: fmt(q[name]) }),
    total === null ? null : el("span", { class: "total", dataset: { total: name }, text: " of " + fmt(total) }));
  }

  // Held flow jobs; the title says what they wait on.
  function heldCell(q) {
    const waits = `${fmt(q.keys_rate_limited)} key(s) waiting for a rate window, ` +
      `${fmt(q.keys_at_concurrency)} for a concurrency slot, ${fmt(q.running_flow)} flow job(s) running, ` +
      `${fmt(q.rate_limited_total)} held back in all`;
    return el("td", { class: "num", dataset: { count: "held" }, title: waits },
      el("span", { class: "n", text: fmt(q.held) }));
  }

  // The flow-control figures of the selected queue and its busiest keys (hidden for a
  // queue without flow jobs).
  function renderFlow(q) {
    const active = q.held || q.running_flow || q.keys_rate_limited || q.keys_at_concurrency;
    $("flow").hidden = !active;
    if (!active) return;
    $("flow-summary").textContent = `${fmt(q.held)} held · ${fmt(q.running_flow)} running · ` +
      `${fmt(q.keys_rate_limited)} key(s) waiting for a rate window · ` +
      `${fmt(q.keys_at_concurrency)} for a slot · ${fmt(q.rate_limited_total)} held back in all · ` +
      `priority mode ${q.flow_mode}`;
    fill($("busiest").tBodies[0], q.busiest_keys.map((k) => el("tr", { dataset: { key: k.key } },
      el("td", { text: k.key }), el("td", { class: "num", text: fmt(k.held) }))));
  }

  // A partitioned queue's count and its jobs per partition (hidden for an unpartitioned
  // queue). "p/n" is partition p of an earlier count n, still consumed after a raise.
  const PARTITION_COUNTS = ["waiting", "active", "delayed", "failed", "dead"];
  function partitionName(label) {
    const [p, n] = String(label).split("/");
    return n === undefined ? p + (p === "0" ? " (home)" : "") : `${p} of earlier ${n}`;
  }

  function renderPartitions(q) {
    const parts = q.partitions || [];
    $("partitions").hidden = parts.length === 0;
    if (!parts.length) return;
    const busiest = parts.reduce((a, b) => (b.waiting > a.waiting ? b : a), parts[0]);
    const share = q.waiting ? Math.round((busiest.waiting / q.waiting) * 100) : 0;
    const earlier = parts.length - q.partition_count;
    $("partitions-summary").textContent = `${fmt(q.partition_count)} partitions` +
      (earlier > 0 ? ` (+${fmt(earlier)} of earlier counts)` : "") +
      (q.waiting ? ` · most waiting: partition ${partitionName(busiest.partition)}, ${share} %` : "");
    fill($("partition-counts").tBodies[0], parts.map((p) => el("tr", { dataset: { partition: p.partition } },
      el("th", { scope: "row", text: partitionName(p.partition) }),
      PARTITION_COUNTS.map((name) => el("td", {
        class: "num" + (name === "dead" && p.dead ? " alert" : ""),
        dataset: { count: name },
        text: fmt(p[name]),
      })))));
  }

  function renderQueues(data, throughput) {
    $("no-queues").hidden = data.page.total > 0;
    const rows = data.queues.map((q) => el(
      "tr",
      {
        dataset: { queue: q.queue },
        class: q.queue === view.queue ? "selected" : "",
        tabindex: 0,
        onclick: () => selectQueue(q.queue),
        onkeydown: (e) => {
          if (e.key === "Enter") selectQueue(q.queue);
        },
      },
      el("th", { scope: "row" }, el("a", { href: "#", onclick: (e) => e.preventDefault(), text: q.queue }),
        q.paused ? badge("paused", "bad") : null,
        q.partition_count > 1 ? badge(`${q.partition_count} partitions`) : null),
      COUNTS.map((name) => countCell(q, name)),
      heldCell(q),
      el("td", { class: "num", dataset: { count: "lag" } }, el("span", { class: "n", text: fmt(q.lag) })),
      el("td", { class: "num", text: q.oldest_waiting_age_ms === null ? "–" : duration(q.oldest_waiting_age_ms) }),
      el("td", { class: "num" + (q.workers === 0 && q.waiting > 0 ? " alert" : ""), dataset: { count: "workers" } },
        el("span", { class: "n", text: fmt(q.workers) })),
      el("td", {}, throughput[q.queue] ? sparkline(throughput[q.queue]) : "–"),
    ));
    fill($("queues").tBodies[0], rows);
    fill($("queues-pager"), data.page.total > PAGE.queues ? offsetPager("queues", data.page, data.queues.length) : null);
  }

  function renderChart(minutes) {
    const chart = $("chart");
    chart.replaceChildren();
    const W = 1200;
    const H = 170;
    const left = 40;
    const bottom = 20;
    const top = 8;
    const plotH = H - bottom - top;
    const max = Math.max(1, ...minutes.map((m) => m.completed + m.failed));
    const bw = (W - left) / minutes.length;
    chart.append(
      svg("line", { x1: left, y1: top + plotH, x2: W, y2: top + plotH, class: "axis" }),
      svg("line", { x1: left, y1: top, x2: W, y2: top, class: "grid" }),
      svg("text", { x: left - 4, y: top + 4, class: "label end" }, max),
      svg("text", { x: left - 4, y: top + plotH, class: "label end" }, 0),
      svg("text", { x: left, y: H - 4, class: "label" }, "-60 min"),
      svg("text", { x: left + (W - left) / 2, y: H - 4, class: "label middle" }, "-30 min"),
      svg("text", { x: W, y: H - 4, class: "label end" }, "now"),
    );
    minutes.forEach((m, i) => {
      const x = left + i * bw + bw * 0.1;
      const ch = (m.completed / max) * plotH;
      const fh = (m.failed / max) * plotH;
      const when = new Date(m.minute * 60000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      const group = svg("g", { class: "bar" }, svg("title", {}, `${when}: ${m.completed} completed, ${m.failed} failed`));
      group.append(svg("rect", { x: left + i * bw, y: top, width: bw, height: plotH, class: "hit" }));
      if (ch > 0) group.append(svg("rect", { x, y: top + plotH - ch, width: bw * 0.8, height: ch, class: "ok" }));
      if (fh > 0) group.append(svg("rect", { x, y: top + plotH - ch - fh, width: bw * 0.8, height: fh, class: "bad" }));
      chart.append(group);
    });
  }

  // ------------------------------------------------------------------ one job

  function leaseCell(job, leaseMs) {
    if (job.idle_ms === undefined || job.idle_ms === null) return el("td", { text: "–" });
    const kind = job.lease === "ok" ? "ok" : job.lease === "late" ? "warn" : "bad";
    const fraction = Math.min(1, job.idle_ms / leaseMs);
    const meter = el("meter", { min: 0, max: 1, low: 0.34, high: 0.5, optimum: 0, value: fraction.toFixed(3) });
    const left = job.lease_left_ms > 0 ? "expires " + inTime(redisNow() + job.lease_left_ms) : "expired " + duration(-job.lease_left_ms) + " ago";
    return el(
      "td",
      { class: "lease" },
      meter,
      " idle " + duration(job.idle_ms) + " / lease " + duration(leaseMs) + " · " + left + " ",
      badge(job.lease, kind),
    );
  }

  function whenCell(job, state) {
    if (state === "delayed") return "due " + inTime(job.due_at_ms || job.score_ms);
    if (state === "completed" || state === "failed") return "finished " + ago(job.finished_at_ms || job.score_ms);
    if (state === "waiting") return "created " + ago(job.created_at_ms);
    if (state === "held") return `key ${job.key} · priority ${job.priority} · created ` + ago(job.created_at_ms);
    return "started " + ago(job.started_at_ms);
  }

  const fact = (term, value) => [el("dt", { text: term }), el("dd", { text: value })];

  // The full record of a job (GET .../jobs/{id}) as DOM nodes: facts, payload, then the
  // result of a completed job or the error and traceback of a failed one.
  function jobView(job) {
    const ended = job.state === "completed" || job.state === "failed";
    const earlier = job.state === "failed" ? "" : " of an earlier attempt";
    const ran = job.started_at_ms && job.finished_at_ms ? duration(job.finished_at_ms - job.started_at_ms) : null;
    return [
      el("dl", { class: "facts" },
        fact("queue", job.queue),
        fact("job id", job.id),
        fact("name", job.name || "–"),
        fact("state", job.state + (job.dead_reason && job.dead_reason !== job.state ? " (" + job.dead_reason + ")" : "")),
        fact("attempts", `${job.attempt} (max retries ${job.options.max_retries})`),
        fact("created", stamp(job.created_at_ms)),
        fact("started", stamp(job.started_at_ms)),
        fact("finished", stamp(job.finished_at_ms) + (ran ? ` (ran ${ran})` : "")),
        job.due_at_ms && !ended ? fact("due", stamp(job.due_at_ms) + " (" + inTime(job.due_at_ms) + ")") : null,
        fact("worker", job.worker || "–"),
      ),
      el("h4", { text: "payload" }), el("pre", { class: "payload", text: pretty(job.data) }),
      job.state === "completed"
        ? [el("h4", { text: "result" }),
          el("pre", { class: "result", text: job.result === null ? "(none: the handler returned nothing)" : pretty(job.result) })]
        : null,
      job.error ? [el("h4", { text: "error" + earlier }), el("pre", { class: "error", text: job.error })] : null,
      job.traceback ? [el("h4", { text: "traceback" + earlier }), el("pre", { class: "traceback", text: job.traceback })] : null,
    ];
  }

  async function jobDetail(queue, id, cell) {
    fill(cell, el("span", { class: "hint", text: "loading…" }));
    try {
      fill(cell, jobView(await api("GET", `queues/${enc(queue)}/jobs/${enc(id)}`)));
    } catch (e) {
      if (e instanceof Unauthorized) return showLogin(e.message);
      fill(cell, el("span", { class: "error", text: e.message }));
    }
  }

  // ------------------------------------------------------------------ job lists

  // "completed: 100 retained of 12,345 all time" above a list of completed or failed jobs.
  function listSummary(data) {
    const n = data.page.total;
    if (data.all_time === null || data.all_time === undefined) {
      return el("span", { class: "hint summary", text: `${data.state}: ${fmt(n)} job${n === 1 ? "" : "s"}` });
    }
    return el("span", {
      class: "hint summary",
      text: `${data.state}: ${fmt(n)} retained of ${fmt(data.all_time)} all time (retention keeps only the most recent records)`,
    });
  }

  function renderJobs(data) {
    const state = data.state;
    const rows = [];
    for (const job of data.jobs) {
      const open = view.open.has(job.id);
      const detail = el("td", { colspan: 6, class: "detail" });
      const detailRow = el("tr", { class: "detailrow", hidden: !open }, detail);
      const toggle = () => {
        if (view.open.has(job.id)) {
          view.open.delete(job.id);
          detailRow.hidden = true;
        } else {
          view.open.add(job.id);
          detailRow.hidden = false;
          jobDetail(view.queue, job.id, detail);
        }
      };
      rows.push(
        el("tr", { class: "job", dataset: { jobId: job.id }, onclick: toggle },
          el("td", {}, el("code", { text: job.id })),
          el("td", { text: job.name || "(record gone)" }),
          el("td", { class: "num", text: job.attempt === undefined ? "–" : job.attempt }),
          state === "active" ? leaseCell(job, data.lease_ms) : el("td", { text: whenCell(job, state) }),
          state === "active"
            ? el("td", { text: job.consumer || "" })
            : el("td", {
              class: "errcell" + (state === "failed" ? "" : " earlier"),
              title: state === "failed" ? null : "error of an earlier attempt",
              text: job.error || "",
            }),
          el("td", {}, el("code", { class: "preview", text: job.data_preview || "" })),
        ),
        detailRow,
      );
      if (open) jobDetail(view.queue, job.id, detail);
    }
    const head = el("tr", {},
      ["job id", "name", "attempt", state === "active" ? "lease (idle vs lease)" : "when", state === "active" ? "worker" : "last error", "payload"]
        .map((t) => el("th", { scope: "col", text: t })));
    fill($("list"),
      el("div", { class: "row wrap" }, listSummary(data), el("span", { class: "spacer" }),
        offsetPager("jobs", data.page, data.jobs.length)),
      data.jobs.length
        ? stacked(el("table", { class: "grid jobs", dataset: { state } }, el("thead", {}, head), el("tbody", {}, rows)))
        : el("p", { class: "hint", text: data.page.total ? `No ${state} job on this page.` : `No ${state} job.` }),
    );
  }

  async function dlqAction(method, path, done) {
    try {
      const result = await api(method, path);
      message(done(result), "ok");
    } catch (e) {
      if (e instanceof Unauthorized) return showLogin(e.message);
      message(e.message, "bad");
    }
    await refresh();
  }

  function deadPager(data) {
    const index = view.deadCursors.length - 1;
    const prev = index > 0 ? () => {
      view.deadCursors.pop();
      view.open.clear();
      refresh();
    } : null;
    const next = data.next_after ? () => {
      view.deadCursors.push(data.next_after);
      view.open.clear();
      refresh();
    } : null;
    return pager("dead", index * data.limit, data.entries.length, data.total, prev, next);
  }

  function renderDead(data) {
    const q = view.queue;
    const rows = [];
    for (const d of data.entries) {
      const open = view.open.has(d.dead_id);
      const detailRow = el("tr", { class: "detailrow", hidden: !open },
        el("td", { colspan: 7, class: "detail" },
          el("dl", { class: "facts" },
            fact("job id", d.job_id),
            fact("dead-letter entry", d.dead_id),
            fact("reason", d.reason || "failed"),
            fact("attempts", d.attempts),
            fact("failed", stamp(d.failed_at_ms)),
          ),
          el("h4", { text: "payload" }), el("pre", { class: "payload", text: pretty(d.data) }),
          el("h4", { text: "error" }), el("pre", { class: "error", text: d.error || "–" }),
          d.traceback ? [el("h4", { text: "traceback" }), el("pre", { class: "traceback", text: d.traceback })] : null,
        ));
      const retry = el("button", {
        type: "button", class: "retry", text: "Retry",
        onclick: (e) => {
          e.stopPropagation();
          e.target.disabled = true;
          dlqAction("POST", `queues/${enc(q)}/dlq/${enc(d.dead_id)}/retry`, () => `Job ${d.job_id} is back in ${q}.`);
        },
      });
      const remove = el("button", {
        type: "button", class: "delete danger", text: "Delete",
        onclick: (e) => {
          e.stopPropagation();
          if (!window.confirm(`Delete dead-letter entry ${d.dead_id} (job ${d.job_id}) for good?`)) return;
          e.target.disabled = true;
          dlqAction("DELETE", `queues/${enc(q)}/dlq/${enc(d.dead_id)}`, () => `Deleted dead-letter entry ${d.dead_id}.`);
        },
      });
      rows.push(
        el("tr", {
          class: "job", dataset: { deadId: d.dead_id, jobId: d.job_id },
          onclick: () => {
            if (view.open.has(d.dead_id)) view.open.delete(d.dead_id);
            else view.open.add(d.dead_id);
            detailRow.hidden = !view.open.has(d.dead_id);
          },
        },
          el("td", {}, el("code", { text: d.job_id })),
          el("td", { text: d.name }),
          el("td", { class: "num", text: d.attempts }),
          el("td", {}, badge(d.reason || "failed", "bad")),
          el("td", { class: "errcell", text: (d.error || "").split("\n")[0] }),
          el("td", { text: ago(d.failed_at_ms) }),
          el("td", { class: "actions" }, retry, remove),
        ),
        detailRow,
      );
    }
    const retryAll = el("button", {
      type: "button", id: "retry-all", text: `Retry all (${fmt(data.total)})`, disabled: data.total === 0,
      onclick: () => {
        if (!window.confirm(`Move all ${data.total} dead-letter entries of ${q} back to the queue?`)) return;
        dlqAction("POST", `queues/${enc(q)}/dlq/retry-all`, (r) => `${r.retried} job(s) are back in ${q}.`);
      },
    });
    const head = el("tr", {}, ["job id", "name", "attempts", "reason", "error", "failed", ""].map((t) => el("th", { scope: "col", text: t })));
    fill($("list"),
      el("div", { class: "row wrap" },
        el("span", { class: "hint summary", text: `${fmt(data.total)} entr${data.total === 1 ? "y" : "ies"} in the dead-letter queue` }),
        el("span", { class: "spacer" }), deadPager(data), retryAll),
      data.entries.length
        ? stacked(el("table", { class: "grid jobs dlq" }, el("thead", {}, head), el("tbody", {}, rows)))
        : el("p", { class: "hint", text: "The dead-letter queue is empty." }),
    );
  }

  function renderSchedules(data) {
    const rows = data.schedules.map((s) => el("tr", { class: "schedule", dataset: { schedule: s.key } },
      el("td", {}, el("code", { text: s.key })),
      el("td", { text: s.name }),
      el("td", { text: s.every_ms !== null ? "every " + duration(s.every_ms) : `cron ${s.cron} (${s.tz})` }),
      el("td", { text: s.next_tick_ms ? `${stamp(s.next_tick_ms)} (${inTime(s.next_tick_ms)})` : "–" }),
      el("td", {}, el("code", { class: "preview", text: JSON.stringify(s.data) })),
    ));
    const head = el("tr", {}, ["schedule", "job name", "repeats", "next tick", "payload"].map((t) => el("th", { scope: "col", text: t })));
    fill($("list"),
      el("div", { class: "row wrap" },
        el("span", { class: "hint summary", text: `${fmt(data.page.total)} repeating schedule${data.page.total === 1 ? "" : "s"}` }),
        el("span", { class: "spacer" }), offsetPager("schedules", data.page, data.schedules.length)),
      data.schedules.length
        ? stacked(el("table", { class: "grid schedules" }, el("thead", {}, head), el("tbody", {}, rows)))
        : el("p", { class: "hint", text: "No repeating schedule." }),
    );
  }

  // ------------------------------------------------------------------ workers

  function renderWorkers(data) {
    const box = $("workers");
    if (!data.workers.length && !data.page.total) {
      fill(box, el("p", { class: "hint", text: "No worker has registered yet." }));
      return;
    }
    const kind = { alive: "ok", stale: "warn", gone: "bad" };
    const rows = [];
    for (const w of data.workers) {
      rows.push(
        el("tr", { class: "worker", dataset: { worker: w.name, queue: w.queue } },
          el("td", {}, el("code", { text: w.name })),
          el("td", { text: w.queue }),
          el("td", {}, badge(w.state, kind[w.state])),
          el("td", { text: w.host ? `${w.host} (pid ${w.pid})` : "–" }),
          el("td", { class: "num" },
            w.running === null ? "–" : `${w.running} / ${w.concurrency}`,
            // Sync handlers past their time limit: each holds one of the worker's slots.
            w.stuck ? [" ", badge(`${w.stuck} stuck`, "warn")] : null),
          el("td", { class: "num", text: w.processed === null ? "–" : w.processed }),
          el("td", { class: "num", text: w.failed === null ? "–" : w.failed }),
          el("td", { class: "num", text: w.seen_age_ms === null ? "–" : duration(w.seen_age_ms) }),
          el("td", { class: "num", text: duration(w.idle_ms) }),
          el("td", { class: "num", text: w.pending }),
        ),
      );
      if (w.jobs.length) {
        const jobs = w.jobs.map((j) =>
          el("tr", { dataset: { jobId: j.id } },
            el("td", {}, el("code", { text: j.id })),
            el("td", { text: j.name || "–" }),
            el("td", { class: "num", text: j.deliveries }),
            el("td", { text: "started " + ago(j.started_at_ms) }),
            leaseCell(j, data.lease_ms),
          ));
        rows.push(el("tr", { class: "running" },
          el("td", { colspan: 10 },
            el("table", { class: "grid inner" },
              el("thead", {}, el("tr", {}, ["running job", "name", "deliveries", "started", "lease"].map((t) => el("th", { scope: "col", text: t })))),
              el("tbody", {}, jobs)))));
      }
    }
    const head = el("tr", {}, ["worker", "queue", "state", "host", "running", "processed", "failed attempts", "heartbeat", "idle", "pending"]
      .map((t) => el("th", { scope: "col", text: t })));
    fill(box,
      data.page.total > PAGE.workers ? el("div", { class: "row wrap" }, el("span", { class: "spacer" }), offsetPager("workers", data.page, data.workers.length)) : null,
      scroller(el("table", { class: "grid", id: "workers-table" }, el("thead", {}, head), el("tbody", {}, rows))));
  }

  // ------------------------------------------------------------------ search by id

  async function findJob(id) {
    const box = $("search-result");
    if (!id) {
      fill(box);
      return;
    }
    fill(box, el("span", { class: "hint", text: "searching…" }));
    try {
      const found = await api("GET", `jobs/${enc(id)}`);
      fill(box, found.jobs.map((job) => el("article", { class: "found", dataset: { jobId: job.id, queue: job.queue } },
        el("h3", {}, el("code", { text: job.id }), " in ", job.queue, " ", badge(job.state, job.state === "failed" ? "bad" : job.state === "completed" ? "ok" : "")),
        jobView(job))));
    } catch (e) {
      if (e instanceof Unauthorized) return showLogin(e.message);
      const text = e.status === 404 ? `Not found: no queue holds a job with id “${id}”.` : e.message;
      fill(box, el("p", { class: "error notfound", text }));
    }
  }

  // ------------------------------------------------------------------ refresh

  function renderTabs(queueInfo) {
    for (const button of $("tabs").querySelectorAll("button")) {
      const state = button.dataset.state;
      button.classList.toggle("current", state === view.state);
      button.setAttribute("aria-pressed", String(state === view.state));
      const n = queueInfo ? queueInfo[state] : null;
      const total = queueInfo && ALL_TIME[state] ? queueInfo[ALL_TIME[state]] : null;
      const label = state === "dead" ? "dead-letter queue" : state;
      const count = n === null || n === undefined ? "" : total === null ? ` (${fmt(n)})` : ` (${fmt(n)} of ${fmt(total)})`;
      button.textContent = label + count;
    }
  }

  // One page of the list of the selected tab; if it came back empty past the end (rows went
  // away since), step back to the last page that has rows.
  async function loadList(queue) {
    const q = enc(queue);
    if (view.state === "dead") {
      let data = await api("GET", `queues/${q}/dlq?limit=${PAGE.dead}&after=${enc(view.deadCursors.at(-1))}`);
      if (!data.entries.length && view.deadCursors.length > 1) {
        view.deadCursors = ["-"];
        data = await api("GET", `queues/${q}/dlq?limit=${PAGE.dead}`);
      }
      return renderDead(data);
    }
    const name = view.state === "schedules" ? "schedules" : "jobs";
    const path = name === "schedules" ? `queues/${q}/schedules?` : `queues/${q}/jobs?state=${view.state}&`;
    let data = await api("GET", `${path}offset=${view.offset[name]}&limit=${PAGE[name]}`);
    const rows = name === "schedules" ? data.schedules : data.jobs;
    if (!rows.length && data.page.offset > 0 && data.page.total > 0) {
      view.offset[name] = Math.floor((data.page.total - 1) / PAGE[name]) * PAGE[name];
      data = await api("GET", `${path}offset=${view.offset[name]}&limit=${PAGE[name]}`);
    }
    return name === "schedules" ? renderSchedules(data) : renderJobs(data);
  }

  async function refresh() {
    if (view.busy) {
      view.again = true;
      return;
    }
    view.busy = true;
    view.again = false;
    try {
      let data = await api("GET", `queues?offset=${view.offset.queues}&limit=${PAGE.queues}`);
      if (!data.queues.length && view.offset.queues > 0) {
        view.offset.queues = 0;
        data = await api("GET", `queues?limit=${PAGE.queues}`);
      }
      view.clockOffset = data.server_time_ms - Date.now();
      const names = data.queues.map((q) => q.queue);
      if (!names.includes(view.queue)) {
        view.queue = names[0] || null;
        view.open.clear();
        resetPages(["jobs", "dead", "schedules"]);
      }
      const tputs = await Promise.all(names.map((q) => api("GET", `queues/${enc(q)}/throughput`)));
      const throughput = Object.fromEntries(tputs.map((t) => [t.queue, t.minutes]));
      renderQueues(data, throughput);
      const info = data.queues.find((q) => q.queue === view.queue);
      $("detail").hidden = !info;
      if (info) {
        $("detail-title").textContent = info.queue;
        $("detail-paused").hidden = !info.paused;
        $("pause").disabled = info.paused;
        $("resume").disabled = !info.paused;
        renderTabs(info);
        renderPartitions(info);
        renderFlow(info);
        renderChart(throughput[info.queue] || []);
        await loadList(info.queue);
      }
      let workers = await api("GET", `workers?offset=${view.offset.workers}&limit=${PAGE.workers}`);
      if (!workers.workers.length && view.offset.workers > 0) {
        view.offset.workers = 0;
        workers = await api("GET", `workers?limit=${PAGE.workers}`);
      }
      renderWorkers(workers);
      showApp();
      $("status").textContent = "updated " + new Date().toLocaleTimeString();
      $("status").className = "status";
    } catch (e) {
      if (e instanceof Unauthorized) {
        const had = sessionStorage.getItem(TOKEN_KEY);
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(had ? "The API refused this token." : "");
      } else {
        $("status").textContent = "error: " + e.message;
        $("status").className = "status bad";
      }
    } finally {
      view.busy = false;
    }
    if (view.again) await refresh();
  }

  function selectQueue(name) {
    if (name !== view.queue) {
      view.open.clear();
      resetPages(["jobs", "dead", "schedules"]);
    }
    view.queue = name;
    refresh();
  }

  function stopTimer() {
    if (view.timer !== null) clearInterval(view.timer);
    view.timer = null;
  }

  function startTimer() {
    stopTimer();
    if ($("auto").checked && !$("app").hidden) view.timer = setInterval(refresh, REFRESH_MS);
  }

  async function queueAction(action) {
    const q = view.queue;
    if (!q) return;
    try {
      await api("POST", `queues/${enc(q)}/${action}`);
      message(action === "pause" ? `${q} is paused: workers stop fetching from it.` : `${q} is resumed.`, "ok");
    } catch (e) {
      if (e instanceof Unauthorized) return showLogin(e.message);
      message(e.message, "bad");
    }
    await refresh();
  }

  // A new #token=... in the address bar (pasted link, bookmark): use it at once, from the
  // first page of everything, without reloading the page.
  function onHashChange() {
    if (!takeTokenFromFragment()) return;
    view.open.clear();
    resetPages(["queues", "jobs", "dead", "schedules", "workers"]);
    message("", "");
    fill($("search-result"));
    refresh().then(startTimer);
  }

  function start() {
    takeTokenFromFragment();
    window.addEventListener("hashchange", onHashChange);
    $("login-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token").value.trim();
      $("token").value = "";
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      refresh().then(startTimer);
    });
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      fill($("search-result"));
      showLogin("");
    });
    $("search-form").addEventListener("submit", (e) => {
      e.preventDefault();
      findJob($("search-id").value.trim());
    });
    $("refresh").addEventListener("click", refresh);
    $("auto").addEventListener("change", startTimer);
    $("pause").addEventListener("click", () => queueAction("pause"));
    $("resume").addEventListener("click", () => queueAction("resume"));
    for (const button of $("tabs").querySelectorAll("button")) {
      button.addEventListener("click", () => {
        view.state = button.dataset.state;
        view.open.clear();
        resetPages(["jobs", "dead", "schedules"]);
        refresh();
      });
    }
    // Without a token, try anyway: an app run with STREAMQ_WEB_ALLOW_NO_TOKEN answers.
    refresh().then(startTimer);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
