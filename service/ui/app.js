// The relevance workbench: a client of the public HTTP API only (GET info, POST search with explain).
// Every URL is relative to the page, so the page works behind a path prefix; API data is inserted with
// textContent only (document text is untrusted).
"use strict";

(() => {
  const KEY_STORAGE = "splade-api-key";
  const BAR_LIMIT = 12;          // bars drawn per hit; the remaining terms are summed into one "other" bar
  const SNIPPET_CHARS = 320;
  const CONFIGS = ["a", "b"];

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  const form = $("#search-form");
  const queryInput = $("#query");
  const kInput = $("#k");
  const compareInput = $("#compare");
  const columns = $("#columns");
  const overlapLine = $("#overlap");
  const authPanel = $("#auth-panel");
  const page = { info: null, run: 0 };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function configParts(name) {
    return {
      name,
      fieldset: $(`fieldset.config[data-config="${name}"]`),
      column: $(`section.column[data-config="${name}"]`),
    };
  }

  // -- the API ------------------------------------------------------------------------------------------

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORAGE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  // Resolves to {ok, status, data} or {ok: false, status, message, details, retryAfter}; never throws.
  async function callApi(path, body) {
    const init = body === undefined
      ? { method: "GET", headers: authHeaders() }
      : {
        method: "POST",
        headers: { "content-type": "application/json", ...authHeaders() },
        body: JSON.stringify(body),
      };
    let response;
    try {
      response = await fetch(new URL(path, document.baseURI), init);
    } catch (err) {
      return { ok: false, status: 0, message: `cannot reach the service: ${err.message}`, details: [] };
    }
    const text = await response.text();
    let payload = null;
    try { payload = JSON.parse(text); } catch (_) { payload = null; }
    if (response.ok && payload !== null) return { ok: true, status: response.status, data: payload };
    if (response.status === 401 || response.status === 403) showAuth(true);
    const error = payload && payload.error;
    return {
      ok: false,
      status: response.status,
      message: error && error.message ? error.message : `HTTP ${response.status} ${response.statusText}`.trim(),
      details: error && Array.isArray(error.details) ? error.details : [],
      retryAfter: Number(response.headers.get("retry-after")) || 0,
    };
  }

  // -- API key (asked for only when the service answers 401/403) -------------------------------------------

  function showAuth(required) {
    authPanel.hidden = false;
    if (required) {
      $("#auth-message").textContent = "The service asks for an API key. It is kept in this tab only "
        + "(sessionStorage) and sent as Authorization: Bearer.";
      authPanel.classList.add("required");
    }
    $("#api-key").focus();
  }

  $("#show-auth").addEventListener("click", () => (authPanel.hidden ? showAuth(false) : (authPanel.hidden = true)));
  authPanel.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key); else sessionStorage.removeItem(KEY_STORAGE);
    $("#api-key").value = "";
    authPanel.classList.remove("required");
    authPanel.hidden = true;
    loadInfo();
  });
  $("#forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    $("#api-key").value = "";
  });

  // -- GET info: limits, and the controls this index supports ----------------------------------------------

  // `scorers` is {"default", "available"}; `modes` may be a list or the same shape. Absent, or a single
  // choice (nothing to choose between): control hidden, and requests leave the field to the server's default.
  function choices(entry) {
    if (!entry) return null;
    if (Array.isArray(entry)) return entry.length > 1 ? { available: entry, default: entry[0] } : null;
    const available = Array.isArray(entry.available) ? entry.available : [];
    return available.length > 1 ? { available, default: entry.default || available[0] } : null;
  }

  function fillSelect(select, options) {
    select.replaceChildren(...options.available.map((name) => {
      const option = el("option", "", name);
      option.value = name;
      option.selected = name === options.default;
      return option;
    }));
  }

  function describe(info) {
    const model = info.model || {};
    const index = info.index || {};
    const counts = index.counts || {};
    const name = (model.origin && model.origin.name)
      || (model.source && model.source.query && model.source.query.source) || model.kind || "model";
    const parts = [
      `model ${name}${model.kind ? ` (${model.kind})` : ""}`,
      counts.documents !== undefined ? `${Number(counts.documents).toLocaleString("en")} documents` : null,
      counts.postings !== undefined ? `${Number(counts.postings).toLocaleString("en")} postings` : null,
      info.provider || null,
    ];
    return parts.filter(Boolean).join(" · ");
  }

  async function loadInfo() {
    const answer = await callApi("info");
    const line = $("#info");
    if (!answer.ok) {
      line.textContent = `info: ${answer.message}`;
      line.classList.add("problem");
      if (answer.status === 503) setTimeout(loadInfo, 1000 * Math.max(1, answer.retryAfter));
      return;
    }
    const info = answer.data;
    page.info = info;
    line.textContent = describe(info);
    line.classList.remove("problem");
    const settings = info.settings || {};
    if (settings.max_k) kInput.max = settings.max_k;
    if (settings.default_k && !kInput.dataset.touched) kInput.value = settings.default_k;
    const maxTerms = settings.max_query_terms || 64;
    const scorers = choices(info.scorers);
    const modes = choices(info.modes);
    for (const name of CONFIGS) {
      const { fieldset } = configParts(name);
      const terms = $(".query-max-terms", fieldset);
      terms.max = maxTerms;
      // Defaults that differ, so the two columns show what pruning the query costs.
      if (!terms.dataset.touched) terms.value = name === "a" ? maxTerms : Math.min(8, maxTerms);
      $(".scorer-control", fieldset).hidden = !scorers;
      if (scorers) fillSelect($(".scorer", fieldset), scorers);
      $(".mode-control", fieldset).hidden = !modes;
      if (modes) fillSelect($(".mode", fieldset), modes);
    }
    document.body.dataset.ready = "true";
  }

  for (const input of $$("input[type=number]")) {
    input.addEventListener("input", () => { input.dataset.touched = "true"; });
  }

  // -- the request ----------------------------------------------------------------------------------------

  // Numbers go as numbers, anything else as typed: the API, not the page, decides what is valid and says why.
  function numberField(raw) {
    const text = String(raw).trim();
    if (text === "") return undefined;
    const value = Number(text);
    return Number.isFinite(value) ? value : text;
  }

  function requestFor(name) {
    const { fieldset } = configParts(name);
    const body = { query: queryInput.value, include_text: true, explain: true };
    const k = numberField(kInput.value);
    if (k !== undefined) body.k = k;
    const terms = numberField($(".query-max-terms", fieldset).value);
    if (terms !== undefined) body.query_max_terms = terms;
    if (!$(".scorer-control", fieldset).hidden) body.scorer = $(".scorer", fieldset).value;
    if (!$(".mode-control", fieldset).hidden) body.mode = $(".mode", fieldset).value;
    return body;
  }

  // -- expansion terms ------------------------------------------------------------------------------------

  // The query text split the way a BERT-uncased tokenizer starts: lowercase, accents stripped, words and
  // single punctuation marks. Without the vocabulary the word-piece split is approximated: a term is "in the
  // text" when it equals a query word, or is a prefix of one (a ##piece: occurs inside one), unless that word
  // is itself a query term: then the word is one vocabulary token and cannot have produced the shorter term
  // ("old" next to "older"). So a term marked as an expansion is never in the text, but an expansion that is
  // a prefix of a query word the encoder did not keep (e.g. "bone" for "bones") goes unmarked.
  function textWords(text) {
    const folded = text.toLowerCase().normalize("NFD").replace(/\p{Mn}/gu, "");
    return folded.match(/[\p{L}\p{N}]+|[^\s\p{L}\p{N}]/gu) || [];
  }

  function inText(token, words, queryTokens) {
    return words.some((word) => {
      if (word === token) return true;
      if (queryTokens.has(word)) return false;
      return token.startsWith("##") ? word.indexOf(token.slice(2), 1) >= 1 : word.startsWith(token);
    });
  }

  // -- rendering ------------------------------------------------------------------------------------------

  function format(value, digits = 4) {
    return Number(value).toFixed(digits);
  }

  function renderTerms(container, queryTerms, words) {
    const heaviest = queryTerms.reduce((m, [, w]) => Math.max(m, w), 0) || 1;
    const queryTokens = new Set(queryTerms.map(([token]) => token));
    const chips = queryTerms.map(([token, weight]) => {
      const expansion = !inText(token, words, queryTokens);
      const chip = el("span", expansion ? "term expansion" : "term", token);
      chip.dataset.token = token;
      chip.dataset.weight = String(weight);
      chip.dataset.expansion = String(expansion);
      const origin = expansion ? "added by the encoder (not in the query text)" : "in the query text";
      chip.title = `${origin}; weight ${format(weight, 3)}`;
      chip.style.setProperty("--strength", String(0.25 + 0.75 * (weight / heaviest)));
      chip.append(el("small", "", format(weight, 2)));
      return chip;
    });
    const expansions = chips.filter((chip) => chip.dataset.expansion === "true").length;
    const heading = el("p", "terms-heading",
      `${queryTerms.length} query terms, ${expansions} added by the encoder`);
    container.replaceChildren(heading, ...chips);
  }

  // Words of the hit's text that a matched term explains: equal to the term, or starting with it (3+ chars).
  function highlighter(contributions) {
    const terms = Object.keys(contributions || {}).map((t) => t.replace(/^##/, "")).filter(Boolean);
    return (word) => {
      const folded = word.toLowerCase().normalize("NFD").replace(/\p{Mn}/gu, "");
      return terms.some((t) => folded === t || (t.length >= 3 && folded.startsWith(t)));
    };
  }

  function snippet(text, isMatch) {
    const paragraph = el("p", "snippet");
    if (!text) return paragraph;
    const tokens = text.match(/[\p{L}\p{N}]+|[^\p{L}\p{N}]+/gu) || [];
    let offset = 0;
    let firstMatch = -1;
    const spans = tokens.map((token) => {
      const span = { token, start: offset, match: /[\p{L}\p{N}]/u.test(token) && isMatch(token) };
      if (span.match && firstMatch < 0) firstMatch = offset;
      offset += token.length;
      return span;
    });
    const start = firstMatch > 80 ? firstMatch - 60 : 0;
    const end = start + SNIPPET_CHARS;
    if (start > 0) paragraph.append("…");
    for (const span of spans) {
      if (span.start + span.token.length <= start || span.start >= end) continue;
      paragraph.append(span.match ? el("mark", "", span.token) : span.token);
    }
    if (end < text.length) paragraph.append("…");
    return paragraph;
  }

  function bars(contributions) {
    const entries = Object.entries(contributions || {}).sort((x, y) => y[1] - x[1]);
    const shown = entries.slice(0, BAR_LIMIT);
    const rest = entries.slice(BAR_LIMIT);
    if (rest.length) shown.push([`${rest.length} other terms`, rest.reduce((s, [, v]) => s + v, 0), true]);
    const largest = shown.reduce((m, [, v]) => Math.max(m, v), 0) || 1;
    const chart = el("div", "bars");
    for (const [token, value, aggregate] of shown) {
      const row = el("div", aggregate ? "bar other" : "bar");
      row.dataset.token = token;
      row.dataset.value = String(value);
      const fill = el("span", "fill");
      fill.style.width = `${(100 * value / largest).toFixed(2)}%`;
      const track = el("span", "track");
      track.append(fill);
      row.append(el("span", "label", token), track, el("span", "value", format(value, 3)));
      chart.append(row);
    }
    return chart;
  }

  function renderHits(list, hits) {
    list.replaceChildren(...hits.map((hit, i) => {
      const item = el("li", "hit");
      item.dataset.id = hit.id;
      item.dataset.score = String(hit.score);
      item.dataset.rank = String(i + 1);
      const head = el("div", "hit-head");
      head.append(el("span", "rank", `${i + 1}`), el("span", "doc-id", hit.id),
        el("span", "title", hit.title || ""), el("span", "badge"), el("span", "score", format(hit.score)));
      item.append(head, snippet(hit.text, highlighter(hit.contributions)), bars(hit.contributions));
      return item;
    }));
  }

  function showError(column, answer) {
    const box = $(".error", column);
    box.replaceChildren(el("strong", "message", answer.message));
    const details = (answer.details || []).filter((d) => d && d.field);
    if (details.length) {
      const list = el("ul", "details");
      for (const d of details) {
        const limit = d.limit === null || d.limit === undefined ? "" : ` (limit: ${d.limit})`;
        list.append(el("li", "", `${d.field}: ${d.message}${limit}`));
      }
      box.append(list);
    }
    box.hidden = false;
  }

  function renderColumn(name, answer, words) {
    const { column } = configParts(name);
    const error = $(".error", column);
    error.hidden = true;
    error.replaceChildren();
    $(".terms", column).replaceChildren();
    $(".hits", column).replaceChildren();
    $(".summary", column).textContent = "";
    if (!answer.ok) {
      showError(column, answer);
      column.dataset.state = "error";
      return;
    }
    const data = answer.data;
    const terms = data.query_terms || [];
    renderTerms($(".terms", column), terms, words);
    renderHits($(".hits", column), data.hits || []);
    const total = data.timings_ms ? ` · ${format(data.timings_ms.total, 1)} ms` : "";
    $(".summary", column).textContent =
      `${(data.hits || []).length} hits · ${terms.length} terms · ${data.postings_traversed} postings${total}`;
    column.dataset.state = "done";
  }

  // Hits present in only one column get marked; overlap@k = shared ids / k.
  function compareColumns(answers) {
    overlapLine.hidden = true;
    for (const name of CONFIGS) {
      for (const item of $$(".hit", configParts(name).column)) {
        item.classList.remove("only-here");
        $(".badge", item).textContent = "";
      }
    }
    if (!compareInput.checked || !answers.every((a) => a.ok)) return;
    const ids = answers.map((a) => a.data.hits.map((h) => h.id));
    const shared = ids[0].filter((id) => ids[1].includes(id)).length;
    const k = Math.max(ids[0].length, ids[1].length);
    CONFIGS.forEach((name, side) => {
      const other = ids[1 - side];
      for (const item of $$(".hit", configParts(name).column)) {
        const rank = other.indexOf(item.dataset.id);
        if (rank < 0) {
          item.classList.add("only-here");
          $(".badge", item).textContent = `only in ${name.toUpperCase()}`;
        } else {
          $(".badge", item).textContent = `${CONFIGS[1 - side].toUpperCase()} #${rank + 1}`;
        }
      }
    });
    overlapLine.dataset.shared = String(shared);
    overlapLine.dataset.k = String(k);
    overlapLine.textContent = k
      ? `overlap@${k}: ${shared} of ${k} hits in both columns (${format(shared / k, 2)}); `
        + `${ids[0].length - shared} only in A, ${ids[1].length - shared} only in B`
      : "no hits in either column";
    overlapLine.hidden = false;
  }

  function applyCompareVisibility() {
    const on = compareInput.checked;
    configParts("b").fieldset.hidden = !on;
    configParts("b").column.hidden = !on;
    columns.classList.toggle("single", !on);
    if (!on) overlapLine.hidden = true;
  }

  async function search(event) {
    if (event) event.preventDefault();
    const run = ++page.run;
    const active = compareInput.checked ? CONFIGS : ["a"];
    columns.dataset.state = "loading";
    for (const name of active) configParts(name).column.dataset.state = "loading";
    const answers = await Promise.all(active.map((name) => callApi("search", requestFor(name))));
    if (run !== page.run) return;  // a newer search started meanwhile: its results win
    const words = textWords(queryInput.value);
    active.forEach((name, i) => renderColumn(name, answers[i], words));
    if (active.length === 2) compareColumns(answers); else overlapLine.hidden = true;
    columns.dataset.state = "done";
    columns.dataset.run = String(run);
  }

  form.addEventListener("submit", search);
  compareInput.addEventListener("change", applyCompareVisibility);
  applyCompareVisibility();
  loadInfo();
})();
