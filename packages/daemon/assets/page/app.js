// The person's page (docs/page.md). Plain browser JavaScript, no library: live state over
// server-sent events (/events), reads with GET /api/*, actions with POST /api/* carrying the
// session's CSRF token. Everything shown is set with textContent: names come from the Miniserver
// and arguments from AI clients, and none of it is ever parsed as HTML.
(() => {
  const csrf = document.querySelector('meta[name="loxmcp-csrf"]').content;
  const $ = (id) => document.getElementById(id);
  const VIEWS = ["approvals", "status", "audit", "house", "tools"];

  /** createElement with attributes, then children (strings become text). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  let state;
  /** Our clock minus the daemon's, so that "time left" counts down right. */
  let skew = 0;
  let signedOut = false;

  // ---------------------------------------------------------------- talking to the daemon

  async function request(method, path, body) {
    const init = { method, credentials: "same-origin", cache: "no-store", headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = csrf;
      init.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch {
      throw new Error("the daemon did not answer (is it running?)");
    }
    const j = await r.json().catch(() => ({}));
    if (r.status === 401) showSignedOut();
    if (!r.ok) throw new Error(j.error || `${r.status} ${r.statusText}`);
    return j;
  }
  const get = (path) => request("GET", path);
  const post = (path, body) => request("POST", path, body || {});

  function toast(text, bad) {
    const t = $("toast");
    t.textContent = text;
    t.className = bad ? "toast bad" : "toast";
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => {
      t.hidden = true;
    }, 6000);
  }

  function setConn(text, cls) {
    const c = $("conn");
    c.textContent = text;
    c.className = `conn ${cls}`;
  }

  function showSignedOut() {
    if (signedOut) return;
    signedOut = true;
    setConn("signed out", "bad");
    for (const v of VIEWS) $(`view-${v}`).hidden = true;
    $("view-signedout").hidden = false;
    $("estop").hidden = true;
    $("stop").disabled = true;
  }

  function listen() {
    const es = new EventSource("/events");
    es.addEventListener("open", () => setConn("live", "ok"));
    es.addEventListener("state", (e) => {
      state = JSON.parse(e.data);
      skew = Date.now() - state.now;
      render();
    });
    es.addEventListener("signed-out", () => {
      es.close();
      showSignedOut();
    });
    es.addEventListener("error", () => {
      if (signedOut) return;
      setConn("reconnecting…", "wait");
      // Still signed in? (EventSource cannot tell a 401 from a dropped connection.)
      get("/api/state").catch(() => {});
    });
  }

  // ---------------------------------------------------------------- views

  let view = "approvals";
  function showView(name) {
    view = VIEWS.includes(name) ? name : "approvals";
    if (signedOut) return;
    for (const v of VIEWS) $(`view-${v}`).hidden = v !== view;
    for (const a of document.querySelectorAll(".tabs a"))
      a.classList.toggle("active", a.dataset.view === view);
    if (view === "audit") loadAudit();
    if (view === "house") loadHouse();
    if (view === "tools") loadTools();
  }
  window.addEventListener("hashchange", () => showView(location.hash.slice(1)));

  function render() {
    if (!state || signedOut) return;
    renderStop();
    renderApprovals();
    renderStatus();
    const changes = state.policy.toolChanges || [];
    const ct = $("count-tools");
    ct.hidden = changes.length === 0;
    ct.textContent = String(changes.length);
    // Views that fetch their data: again when something they show may have changed.
    const key = JSON.stringify([state.counters.toolCalls, state.pending.length, state.policy.emergencyStop]);
    if (view === "audit" && key !== render.auditKey) loadAudit();
    render.auditKey = key;
    const toolsKey = JSON.stringify(changes);
    if (view === "tools" && toolsKey !== render.toolsKey) loadTools();
    render.toolsKey = toolsKey;
    const houseKey = state.policy.structure ? state.policy.structure.id : null;
    if (view === "house" && houseKey !== render.houseKey) loadHouse();
    render.houseKey = houseKey;
  }

  const pin = () => state.policy.pin || { set: false };

  // ---------------------------------------------------------------- emergency stop

  function renderStop() {
    const stop = state.policy.emergencyStop;
    $("estop").hidden = !stop;
    document.body.classList.toggle("stopped", Boolean(stop));
    if (!stop) return;
    $("estop-since").textContent = `since ${clock(stop.since)}${stop.by ? ` (by ${stop.by})` : ""}`;
    $("resume-form").hidden = !pin().set;
    $("resume-nopin").hidden = pin().set;
  }

  $("stop").addEventListener("click", async () => {
    const b = $("stop");
    b.disabled = true;
    try {
      const r = await post("/api/stop-all", { reason: "emergency stop on the page" });
      const stopped = r.stopped || [];
      const failed = stopped.filter((s) => !s.ok);
      toast(
        failed.length
          ? `Emergency stop active; ${failed.length} of ${stopped.length} motors did not confirm: check them`
          : `Emergency stop active: ${stopped.length} blinds and gates stopped, AI commands refused`,
        failed.length > 0,
      );
    } catch (e) {
      toast(`Emergency stop: ${e.message}`, true);
    } finally {
      b.disabled = false;
    }
  });

  $("resume-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("resume-pin");
    const err = $("resume-err");
    err.hidden = true;
    try {
      await post("/api/resume", { pin: input.value });
      toast("Emergency stop lifted: AI commands run again within their rules");
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally {
      input.value = "";
    }
  });

  // ---------------------------------------------------------------- approvals

  /** code → card, so that a redraw never wipes a PIN being typed. */
  const cards = new Map();

  function renderApprovals() {
    const list = state.pending || [];
    const count = $("count-approvals");
    const waiting = list.filter((p) => !p.approved).length;
    count.hidden = waiting === 0;
    count.textContent = String(waiting);
    $("none").hidden = list.length > 0;
    $("nopin").hidden = pin().set || list.length === 0;
    const locked = $("locked");
    locked.hidden = !pin().lockedForSec;
    locked.textContent = pin().lockedForSec
      ? `Too many wrong PINs: approving is refused for another ${pin().lockedForSec} s.`
      : "";
    const seen = new Set();
    for (const p of list) {
      seen.add(p.code);
      let card = cards.get(p.code);
      if (!card) {
        card = approvalCard(p);
        cards.set(p.code, card);
        $("pending").prepend(card.el);
      }
      card.update(p);
    }
    for (const [code, card] of cards) {
      if (!seen.has(code)) {
        card.el.remove();
        cards.delete(code);
      }
    }
  }

  function approvalCard(p) {
    const left = h("span", { class: "left" });
    const status = h("p", { class: "state" });
    const err = h("p", { class: "err", hidden: true });
    const input = h("input", {
      type: "password",
      inputmode: "numeric",
      autocomplete: "off",
      "aria-label": `Approval PIN for ${p.code}`,
      required: true,
    });
    const approve = h("button", { type: "submit" }, "Approve");
    const form = h(
      "form",
      { class: "pinform", autocomplete: "off" },
      h("label", {}, "Approval PIN ", input),
      approve,
    );
    const deny = h("button", { type: "button", class: "deny" }, "Deny");
    const title = p.device
      ? [h("strong", {}, p.device), p.room ? ` in ${p.room}` : ""]
      : [h("strong", {}, p.tool)];
    const el = h(
      "article",
      { class: "card pending", "data-code": p.code },
      h(
        "header",
        {},
        h("h2", {}, title),
        p.tier ? h("span", { class: `tier ${p.tier.toLowerCase()}` }, p.tier) : "",
      ),
      h(
        "p",
        { class: "what" },
        h("span", { class: "client" }, p.client),
        " asks to ",
        p.command && p.device ? `send “${p.command}” to ${p.type || "the control"} “${p.device}”` : p.summary,
      ),
      p.why ? h("p", { class: "why" }, `Why it needs you: ${p.why}`) : "",
      h("p", { class: "meta" }, `code ${p.code} · tool ${p.tool} · `, left),
      status,
      h("div", { class: "actions" }, form, deny),
      err,
    );
    const fail = (e) => {
      err.textContent = e.message;
      err.hidden = false;
    };
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      err.hidden = true;
      approve.disabled = true;
      try {
        await post("/api/approve", { code: p.code, pin: input.value });
        toast(`Approved: it runs when ${p.client} repeats the call`);
      } catch (e) {
        fail(e);
      } finally {
        input.value = "";
        approve.disabled = false;
      }
    });
    deny.addEventListener("click", async () => {
      err.hidden = true;
      try {
        await post("/api/deny", { code: p.code });
        toast(`Denied: ${p.client} will not ${p.summary}`);
      } catch (e) {
        fail(e);
      }
    });
    return {
      el,
      update(q) {
        el.dataset.expires = String(q.expiresAt);
        el.classList.toggle("approved", q.approved);
        status.textContent = q.approved
          ? `Approved — it runs once when ${q.client} repeats the call.`
          : "Waiting for your decision.";
        form.hidden = q.approved || !pin().set;
        approve.disabled = Boolean(pin().lockedForSec);
        deny.hidden = q.approved;
        tickCard(el, left);
      },
      left,
    };
  }

  function tickCard(el, left) {
    const secs = Math.max(0, Math.round((Number(el.dataset.expires) - (Date.now() - skew)) / 1000));
    left.textContent = secs > 0 ? `${secs} s left` : "expired";
  }

  setInterval(() => {
    for (const c of cards.values()) tickCard(c.el, c.left);
  }, 1000);

  // ---------------------------------------------------------------- status

  function renderStatus() {
    const d = state.daemon;
    const p = state.policy;
    const rows = [
      ["Daemon", `${d.state}${d.reason ? ` — ${d.reason}` : ""}`],
      ["Version", `${d.version} (pid ${d.pid}, up ${duration(d.uptimeSec)})`],
      ["Relay entry", d.entry || "—"],
      ["Token", d.tokenExpiresInSec !== undefined ? `expires in ${duration(d.tokenExpiresInSec)}` : "—"],
      ["Session", d.sessionAgeSec !== undefined ? `${duration(d.sessionAgeSec)} old` : "—"],
      ["Last ping", d.lastPingAgoSec !== undefined ? `${duration(d.lastPingAgoSec)} ago` : "—"],
      [
        "Policy",
        `${p.mode}${
          p.clients && Object.keys(p.clients).length
            ? ` (clients: ${Object.entries(p.clients)
                .map(([k, v]) => `${k}=${v}`)
                .join(", ")})`
            : ""
        }`,
      ],
      [
        "Approval PIN",
        p.pin?.set
          ? `set${p.pin.failures ? `, ${p.pin.failures} wrong in a row` : ""}${p.pin.lockedForSec ? `, locked ${p.pin.lockedForSec} s` : ""}`
          : "not set (`loxmcp pin set`)",
      ],
      ["Emergency stop", p.emergencyStop ? `ACTIVE since ${clock(p.emergencyStop.since)}` : "off"],
      [
        "Structure",
        p.structure
          ? `${p.structure.controls} controls (checked ${clock(p.structure.checkedAt)})`
          : `unknown${p.structureError ? `: ${p.structureError}` : ""}`,
      ],
      [
        "Storage",
        state.storage && state.storage.ok === false ? `NOT WRITABLE: ${state.storage.error}` : "ok",
      ],
      [
        "Counters",
        `${state.counters.toolCalls ?? 0} tool calls · ${state.counters.logins ?? 0} logins · ${state.counters.refreshes ?? 0} refreshes · ${state.counters.outcomeUnknown ?? 0} outcome unknown`,
      ],
    ];
    $("status").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const body = $("clients").tBodies[0];
    const clients = state.clients || [];
    body.replaceChildren(
      ...(clients.length
        ? clients.map((c) =>
            h(
              "tr",
              {},
              h("td", {}, c.name),
              h("td", {}, c.version || ""),
              h("td", {}, c.pid ?? ""),
              h("td", {}, clock(c.since)),
            ),
          )
        : [h("tr", {}, h("td", { colspan: 4, class: "empty" }, "no MCP client is connected"))]),
    );
  }

  // ---------------------------------------------------------------- audit

  async function loadAudit() {
    const q = new URLSearchParams();
    const client = $("f-client").value.trim();
    if (client) q.set("client", client);
    q.set("decision", $("f-decision").value);
    const since = $("f-since").value;
    if (since) q.set("since", since);
    q.set("limit", "300");
    loadAudit.seq = (loadAudit.seq || 0) + 1;
    const seq = loadAudit.seq;
    try {
      const r = await get(`/api/audit?${q}`);
      if (seq !== loadAudit.seq) return;
      const rows = (r.events || []).slice().reverse();
      $("audit-count").textContent = `${rows.length} row${rows.length === 1 ? "" : "s"}, newest first`;
      $("audit").tBodies[0].replaceChildren(...rows.map(auditRow));
    } catch (e) {
      $("audit-count").textContent = e.message;
    }
  }

  function auditRow(e) {
    const what = [e.tool, e.controlName ? `“${e.controlName}”` : "", e.command || ""]
      .filter(Boolean)
      .join(" ");
    return h(
      "tr",
      { class: `d-${e.decision}` },
      h("td", { class: "nowrap" }, clock(e.ts, true)),
      h("td", {}, e.client + (e.clientPid ? `[${e.clientPid}]` : "")),
      h("td", {}, h("span", { class: `dec ${e.decision}` }, e.decision)),
      h("td", {}, e.tier || ""),
      h("td", {}, what),
      h("td", {}, `${e.outcome}${e.latencyMs !== undefined ? ` ${e.latencyMs} ms` : ""}`),
      h("td", { class: "reason" }, e.reason || ""),
    );
  }

  $("audit-filter").addEventListener("submit", (ev) => {
    ev.preventDefault();
    loadAudit();
  });
  for (const id of ["f-decision", "f-since"]) $(id).addEventListener("change", () => loadAudit());

  // ---------------------------------------------------------------- house

  const TIER_RANK = { T1: 1, T2: 2, T3: 3, T4: 4 };

  async function loadHouse() {
    const note = $("house-note");
    try {
      const r = await get("/api/house");
      note.hidden = true;
      const rooms = new Map();
      for (const c of r.controls || []) {
        const room = c.room || "(no room)";
        if (!rooms.has(room)) rooms.set(room, []);
        rooms.get(room).push(c);
      }
      const cardsOut = [...rooms.entries()]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([room, controls]) => {
          const top = controls.reduce((m, c) => Math.max(m, TIER_RANK[c.tier] || 0), 0);
          return h(
            "article",
            { class: `room top-t${top}` },
            h("h2", {}, room, h("span", { class: "n" }, ` ${controls.length}`)),
            h(
              "ul",
              {},
              controls
                .sort((a, b) => a.name.localeCompare(b.name))
                .map((c) =>
                  h(
                    "li",
                    { title: c.tierReason || "" },
                    h("span", { class: `tier ${String(c.tier || "").toLowerCase()}` }, c.tier || "?"),
                    h("span", { class: "cname" }, c.name),
                    h("span", { class: "ctype" }, c.type),
                  ),
                ),
            ),
          );
        });
      $("rooms").replaceChildren(...cardsOut);
    } catch (e) {
      note.textContent = e.message;
      note.hidden = false;
    }
  }

  // ---------------------------------------------------------------- tool changes

  let toolsDigest;
  async function loadTools() {
    const note = $("tools-note");
    const list = $("tool-changes");
    try {
      const r = await get("/api/tools");
      toolsDigest = r.digest;
      const changes = r.changes || [];
      note.textContent = changes.length
        ? `The Miniserver's tool list differs from the one you accepted. Calls to new or changed tools are held until you accept.`
        : `The Miniserver's tool list (${r.tools} tools) is the one you accepted.`;
      list.replaceChildren(
        ...changes.map((c) =>
          h(
            "li",
            { class: c.change },
            h(
              "strong",
              {},
              c.change === "added" ? "new tool" : c.change === "removed" ? "removed" : "changed",
            ),
            ` ${c.name}`,
            c.fields?.length ? `: ${c.fields.join(", ")}` : "",
          ),
        ),
      );
      $("tools-form").hidden = changes.length === 0 || !pin().set;
      $("tools-nopin").hidden = changes.length === 0 || pin().set;
    } catch (e) {
      note.textContent = e.message;
      list.replaceChildren();
      $("tools-form").hidden = true;
    }
  }

  $("tools-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = $("tools-pin");
    const err = $("tools-err");
    err.hidden = true;
    try {
      const r = await post("/api/tools-accept", { pin: input.value, digest: toolsDigest });
      toast(`Accepted ${r.accepted} tool change${r.accepted === 1 ? "" : "s"}`);
      loadTools();
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally {
      input.value = "";
    }
  });

  // ---------------------------------------------------------------- sign out, helpers, start

  $("logout").addEventListener("click", async () => {
    try {
      await post("/logout");
    } catch {
      // signed out either way
    }
    showSignedOut();
  });

  function clock(t, withDate) {
    if (t === undefined || t === null) return "";
    const d = new Date(t);
    const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    return withDate ? `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}` : time;
  }

  function duration(sec) {
    if (sec === undefined || sec === null) return "—";
    const s = Math.abs(Math.round(sec));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  showView(location.hash.slice(1) || "approvals");
  listen();
})();
