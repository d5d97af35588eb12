// The hall dashboard: polls /api/dashboard with the bearer token kept in
// sessionStorage and redraws. No libraries, no build step.
"use strict";

const POLL_MS = 1500;
const LEVELS = ["非常满意", "满意", "基本满意", "不满意", "非常不满意"];
const SEV_NAME = { critical: "严重", warning: "注意", info: "提示" };
const $ = (sel) => document.querySelector(sel);
const view = { period: "today", series: "hourly" };
let last = null;
let timer = null;

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Hall local time, whatever the browser's time zone is.
function local(ts, withDate) {
  if (ts === null || ts === undefined) return "—";
  const iso = new Date((ts + (last ? last.tz_offset_min : 480) * 60) * 1000).toISOString();
  return withDate ? iso.slice(5, 10) + " " + iso.slice(11, 16) : iso.slice(11, 19);
}

function ago(s) {
  if (s === null || s === undefined) return "—";
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " 秒前";
  if (s < 3600) return Math.floor(s / 60) + " 分钟前";
  if (s < 86400) return (s / 3600).toFixed(1) + " 小时前";
  return Math.floor(s / 86400) + " 天前";
}

function pct(x) {
  return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%";
}

// --- login ----------------------------------------------------------------
function token() {
  return sessionStorage.getItem("hcp-token");
}

function showLogin(message) {
  $("#app").hidden = true;
  $("#logout").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message || "";
  $("#token").focus();
}

$("#login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("hcp-token", $("#token").value.trim());
  $("#token").value = "";
  start();
});

$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem("hcp-token");
  clearTimeout(timer);
  showLogin();
});

for (const tabs of document.querySelectorAll("[data-tabs]")) {
  tabs.addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    view[tabs.dataset.tabs] = b.dataset.value;
    for (const x of tabs.querySelectorAll("button")) x.classList.toggle("on", x === b);
    if (last) render(last);
  });
}

// --- polling ----------------------------------------------------------------
async function poll() {
  clearTimeout(timer);
  try {
    const resp = await fetch("/api/dashboard", { headers: { Authorization: "Bearer " + token() }, cache: "no-store" });
    if (resp.status === 401) {
      sessionStorage.removeItem("hcp-token");
      showLogin("令牌错误，请重新输入。");
      return;
    }
    if (!resp.ok) throw new Error("HTTP " + resp.status);
    last = await resp.json();
    $("#stale").hidden = true;
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#logout").hidden = false;
    render(last);
  } catch (err) {
    $("#stale").hidden = false;
    $("#stale").textContent = "无法连接网关（" + err.message + "），数据停留在 " + (last ? local(last.now) : "—");
  }
  timer = setTimeout(poll, POLL_MS);
}

function start() {
  if (!token()) return showLogin();
  poll();
}

// --- rendering ----------------------------------------------------------------
function render(d) {
  $("#hall").textContent = d.hall;
  $("#clock").textContent = local(d.now);
  const g = d.gateway;
  const crit = d.alerts.filter((a) => a.severity === "critical").length;
  $("#summary").innerHTML =
    pill(g.online === g.devices ? "ok" : "critical", "在线 " + g.online + "/" + g.devices) +
    pill(d.alarm ? "critical" : "ok", d.alarm ? "存储告警" : "存储正常") +
    pill(crit ? "critical" : d.alerts.length ? "warning" : "ok", "告警 " + d.alerts.length);
  renderAlerts(d);
  renderWindows(d);
  renderStats(d);
  renderChart(d);
  renderBad(d);
  renderUpstream(d);
  $("#footer").textContent =
    "更新于 " + local(d.now, true) + " · 统计于 " + local(d.figures_at) + " · 会话 " + d.session +
    " · 事件 " + g.events + " · ACK p50/p99 " + (g.ack_p50_ms ?? "—") + "/" + (g.ack_p99_ms ?? "—") + " ms" +
    (g.mqtt === null ? "" : " · MQTT " + (g.mqtt ? "已连接" : "未连接"));
}

function pill(sev, text) {
  return '<span class="pill ' + sev + '">' + esc(text) + "</span>";
}

function renderAlerts(d) {
  $("#alert-count").textContent = d.alerts.length || "";
  $("#alerts-box").classList.toggle("quiet", !d.alerts.length);
  $("#alerts").innerHTML = d.alerts.length
    ? d.alerts.map((a) =>
        '<li class="alert ' + esc(a.severity) + '" data-rule="' + esc(a.rule) + '" data-id="' + esc(a.id) + '">' +
        '<span class="sev">' + esc(SEV_NAME[a.severity] || a.severity) + "</span>" +
        '<span class="text">' + esc(a.text) + "</span>" +
        '<span class="since">' + esc(local(a.since, true)) + "</span></li>").join("")
    : '<li class="none">一切正常</li>';
}

function renderWindows(d) {
  const bad = d.windows.filter((w) => w.problems.some((p) => p[0] !== "info")).length;
  $("#window-count").textContent = d.windows.length + " 台" + (bad ? " · " + bad + " 台需处理" : "");
  $("#windows").innerHTML = d.windows.map((w) => {
    const worst = w.problems.length ? w.problems[0][0] : "ok";
    const sev = !w.online ? "critical" : worst === "info" ? "ok" : worst;
    const off = w.clock_offset_s === null ? "未同步" : (w.clock_offset_s >= 0 ? "+" : "") + w.clock_offset_s.toFixed(1) + " 秒";
    return '<article class="tile ' + sev + '" data-window="' + esc(w.window) + '" data-device="' + esc(w.device_id) +
      '" data-online="' + w.online + '">' +
      '<div class="tile-head"><span class="win">' + esc(w.window || "未绑定") + "</span>" +
      '<span class="state">' + (w.online ? "在线" : "离线") + "</span></div>" +
      '<div class="staff">' + esc(w.staff_name || "") + " " + esc(w.staff_id || "—") + "</div>" +
      "<dl>" +
      "<dt>最近评价</dt><dd class=\"last-rating\">" + esc(w.last_rating_at ? local(w.last_rating_at, true) : "—") + "</dd>" +
      "<dt>最后通信</dt><dd>" + esc(ago(w.last_seen === null ? null : d.now - w.last_seen)) + "</dd>" +
      "<dt>设备日志</dt><dd>" + esc(w.journal_depth ?? "—") + "</dd>" +
      "<dt>待上传</dt><dd>" + esc(w.outbox_pending) + "</dd>" +
      "<dt>固件</dt><dd>" + esc(w.fw || "—") + "</dd>" +
      "<dt>时钟</dt><dd>" + esc(off) + "</dd>" +
      "</dl>" +
      '<div class="dev">' + esc(w.device_id) + "</div>" +
      (w.problems.length ? '<ul class="problems">' + w.problems.map((p) => '<li class="' + esc(p[0]) + '">' + esc(p[1]) + "</li>").join("") + "</ul>" : "") +
      "</article>";
  }).join("") || '<p class="none">还没有评价器连接到网关。</p>';
}

function reasonsText(d, reasons) {
  return Object.entries(reasons || {}).map(([code, n]) => esc(d.reasons[code] || code) + "×" + n).join("、");
}

function statsTable(d, rows, key) {
  const head = "<tr><th>" + (key === "staff" ? "工作人员</th><th>窗口" : "窗口") + "</th>" +
    LEVELS.map((l, i) => '<th title="' + l + '">' + (5 - i) + "★</th>").join("") +
    "<th>好评</th><th>差评</th><th>满意率</th><th>邀评</th><th>覆盖率</th><th>未评价</th><th>主动按键</th><th>差评原因</th></tr>";
  const body = rows.map((r) => {
    const name = key === "staff" ? esc((d.staff_names[r.staff] || "") + " " + (r.staff || "—")) + "</td><td>" + esc(r.window || "—") : esc(r.window || "—");
    const flag = r.bad_share !== null && r.bad_share > d.limits.window_bad_share ? "bad" : "";
    return '<tr data-row="' + key + ":" + esc(key === "staff" ? r.staff : r.window) + '" class="' + flag + '"><td>' + name + "</td>" +
      LEVELS.map((l) => "<td>" + r[l] + "</td>").join("") +
      '<td data-col="good">' + r.good + '</td><td data-col="bad" class="' + (r.bad ? "bad-n" : "") + '">' + r.bad +
      '</td><td data-col="satisfaction">' + pct(r.satisfaction_rate) + '</td><td data-col="invited">' + r.invited +
      '</td><td data-col="coverage">' + pct(r.coverage) + '</td><td data-col="unrated">' + r.unrated +
      '</td><td data-col="uninvited">' + r.uninvited + '</td><td class="reasons">' + reasonsText(d, r.reasons) + "</td></tr>";
  }).join("");
  return head + (body || '<tr><td colspan="17" class="none">暂无数据</td></tr>');
}

function renderStats(d) {
  const rows = view.period === "today" ? d.today.rows : d.month_figures.rows;
  const total = view.period === "today" ? rows.find((r) => r.level === "total") : rows.find((r) => r.level === "department");
  const t = total || { rated: 0, good: 0, bad: 0, satisfaction_rate: null, coverage: null, unrated: 0, uninvited: 0 };
  const label = view.period === "today" ? "今日" : d.month;
  $("#totals").innerHTML = [
    [label + " 评价", t.rated, "rated"], ["好评", t.good, "good"], ["差评", t.bad, "bad"],
    ["满意率", pct(t.satisfaction_rate), "satisfaction"], ["覆盖率", pct(t.coverage), "coverage"],
    ["未评价", t.unrated, "unrated"], ["主动按键", t.uninvited, "uninvited"],
  ].concat(view.period === "today" ? [["无应答", d.today.expired || 0, "expired"]] : []).map(([k, v, c]) => '<div class="total" data-total="' + c + '"><b>' + esc(v) + "</b><span>" + esc(k) + "</span></div>").join("");
  $("#by-window").innerHTML = statsTable(d, rows.filter((r) => r.level === "window"), "window");
  $("#by-staff").innerHTML = statsTable(d, rows.filter((r) => r.level === "staff"), "staff");
}

function renderChart(d) {
  const data = d.series[view.series];
  const W = 640, H = 220, L = 34, B = 24, T = 10;
  const max = Math.max(1, ...data.map((x) => x[0] + x[1]));
  const mag = Math.pow(10, Math.floor(Math.log10(max / 4)));
  const tick = Math.max(1, [1, 2, 5, 10].map((m) => m * mag).find((t) => t * 4 >= max));
  const top = tick * 4;
  const bw = (W - L - 4) / data.length;
  const y = (v) => H - B - (v / top) * (H - B - T);
  let svg = '<svg viewBox="0 0 ' + W + " " + H + '" role="img" aria-label="评价趋势">';
  for (let i = 0; i <= 4; i++) {
    const v = tick * i;
    svg += '<line class="grid" x1="' + L + '" x2="' + W + '" y1="' + y(v) + '" y2="' + y(v) + '"/>' +
      '<text class="axis" x="' + (L - 4) + '" y="' + (y(v) + 4) + '" text-anchor="end">' + v + "</text>";
  }
  data.forEach(([good, bad], i) => {
    const x = L + i * bw + 1, w = Math.max(1, bw - 2);
    const title = (view.series === "hourly" ? i + ":00" : d.month + "-" + (i + 1)) + " 好评 " + good + " 差评 " + bad;
    svg += '<g class="bar" data-i="' + i + '"><title>' + title + "</title>" +
      '<rect class="good" x="' + x + '" y="' + y(good) + '" width="' + w + '" height="' + (H - B - y(good)) + '"/>' +
      '<rect class="bad" x="' + x + '" y="' + y(good + bad) + '" width="' + w + '" height="' + (y(good) - y(good + bad)) + '"/></g>';
    const every = view.series === "hourly" ? 3 : 5;
    if (i % every === 0) {
      svg += '<text class="axis" x="' + (x + w / 2) + '" y="' + (H - 6) + '" text-anchor="middle">' + (view.series === "hourly" ? i : i + 1) + "</text>";
    }
  });
  svg += "</svg>";
  const sum = data.reduce((a, x) => [a[0] + x[0], a[1] + x[1]], [0, 0]);
  $("#chart").innerHTML = svg + '<div class="legend"><span class="good">■ 好评 ' + sum[0] + '</span><span class="bad">■ 差评 ' + sum[1] + "</span></div>";
}

function renderBad(d) {
  $("#bad-today").innerHTML = d.bad_today.length
    ? "<tr><th>时间</th><th>窗口</th><th>工作人员</th><th>评分</th><th>原因</th></tr>" +
      d.bad_today.map((b) => '<tr data-event="' + esc(b.event_id) + '"><td>' + local(b.at) + "</td><td>" + esc(b.window || "—") +
        "</td><td>" + esc((d.staff_names[b.staff_id] || "") + " " + (b.staff_id || "—")) + '</td><td class="bad-n">' + b.score + "★</td><td>" +
        esc(b.reasons.join("、") || "—") + "</td></tr>").join("")
    : '<tr><td class="none">今日暂无差评</td></tr>';
}

function renderUpstream(d) {
  $("#targets").innerHTML = d.upstream.targets.map((t) => {
    const sev = t.oldest_pending_age_s > 120 ? "critical" : !t.connected && t.pending ? "warning" : "ok";
    return '<div class="target ' + sev + '" data-target="' + esc(t.name) + '"><h4>' + esc(t.name) + " <small>" + esc(t.kind) + "</small> " +
      pill(t.connected ? "ok" : "warning", t.connected ? "已连接" : "未连接") + "</h4><dl>" +
      '<dt>积压</dt><dd data-col="pending">' + t.pending + "</dd>" +
      "<dt>最早未送达</dt><dd>" + (t.pending ? Math.round(t.oldest_pending_age_s) + " 秒" : "—") + "</dd>" +
      "<dt>速率</dt><dd>" + t.rate + " 条/秒</dd>" +
      "<dt>已送达</dt><dd>" + t.delivered + "</dd>" +
      "<dt>被拒收</dt><dd>" + t.rejected + "</dd>" +
      "<dt>错误</dt><dd>" + t.errors + "</dd></dl>" +
      (t.last_error ? '<p class="last-error">' + esc(t.last_error) + "</p>" : "") + "</div>";
  }).join("") || '<p class="none">未配置上游（[[upstream]]）：记录不会上传。</p>';
  const rej = d.upstream.rejected;
  $("#rejected").innerHTML = rej.length
    ? "<tr><th>上游</th><th>办件编号</th><th>窗口</th><th>评价器</th><th>尝试</th><th>原因</th></tr>" +
      rej.map((r) => "<tr><td>" + esc(r.target) + "</td><td>" + esc(r.projectNo) + "</td><td>" + esc(r.window) + "</td><td>" +
        esc(r.device_id) + "</td><td>" + r.attempts + '</td><td class="reason">' + esc(r.error) + "</td></tr>").join("")
    : '<tr><td class="none">没有被拒收的记录</td></tr>';
}

start();
