// The web page's script: plain JavaScript (an ES module), no framework, no build step.
//
// It calls the public API only, as any client would (see /docs), with URLs relative to the page:
//   GET  model, model/loss.png                         the model panel
//   GET  users/{id}/ratings?limit=                     a user's highest-rated movies
//   GET  users/{id}/recommendations?k=&rank_by=&explain=true
//   GET  movies?query=&limit=                          title search (most-rated first)
//   PUT  users/{id}/ratings/{movie_id}  {"rating": 4.5}, DELETE the same: a fresh user's ratings
// Every answer that is not a list (unknown user, overloaded server, no ratings yet, a write that
// needs a token) is said in words where the list would be. Text from the API is only ever set
// as text (textContent), never parsed as HTML.

const FRESH_ID_MIN = 1_000_000; // above every user id of the MovieLens releases (ml-32m: 200,948)
const FRESH_ID_MAX = 9_999_999;
const TOKEN_KEY = "movie-recommender.api-token"; // sessionStorage: this tab only
const FRESH_KEY = "movie-recommender.fresh-user"; // localStorage: come back to the same ratings
const SEARCH_LIMIT = 10;
const SEARCH_DELAY_MS = 250;
const FRESH_RATINGS_LIMIT = 100;
const STARS = [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5];

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, detail, retryAfter) {
    super(detail || `HTTP ${status}`);
    this.status = status; // 0: no answer at all
    this.detail = detail;
    this.retryAfter = retryAfter;
  }
}

function detailOf(body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  }
  return "";
}

function storage(kind) {
  try {
    return kind === "session" ? window.sessionStorage : window.localStorage;
  } catch {
    return null; // storage disabled: the page still works, it just forgets
  }
}

function remembered(kind, key) {
  return storage(kind)?.getItem(key) ?? null;
}

function remember(kind, key, value) {
  try {
    storage(kind)?.setItem(key, value);
  } catch {
    // full or disabled: nothing to do
  }
}

async function api(method, path, { params = {}, body } = {}) {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const token = remembered("session", TOKEN_KEY);
  if (method !== "GET" && token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, "no answer");
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw new ApiError(response.status, detailOf(data), response.headers.get("Retry-After"));
  return data;
}

// What went wrong, in words. `action` completes "Could not ...".
function explain(error, { action, notFound }) {
  const detail = error.detail ? ` (“${error.detail}”)` : "";
  switch (error.status) {
    case 0:
      return `Could not ${action}: the server does not answer. Check that it is running, then try again.`;
    case 401:
      return `Could not ${action}: this server needs a token for that (401 Unauthorized).`;
    case 404:
      return notFound || `Could not ${action}: not found${detail}.`;
    case 422:
      return `Could not ${action}: the server refused the request${detail}.`;
    case 503: {
      const wait = error.retryAfter ? `in ${error.retryAfter} s` : "in a moment";
      return `Could not ${action}: the server is overloaded or unavailable right now${detail}. Try again ${wait}.`;
    }
    default:
      return `Could not ${action}: the server answered HTTP ${error.status}${detail}.`;
  }
}

// ---------------------------------------------------------------------------------------------
// Building blocks

function h(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of [].concat(children)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const srOnly = (text) => h("span", { class: "sr-only" }, text);
const number = new Intl.NumberFormat("en");

// "Heat (1995)" -> {name: "Heat", year: "1995"}; titles without a year keep their whole text.
function splitTitle(title) {
  const match = /^(.*\S)\s*\((\d{4})(?:[-–]\d{0,4})?\)\s*$/.exec(title);
  return match ? { name: match[1], year: match[2] } : { name: title, year: "" };
}

// 4.5 -> "4.5", 4 -> "4"
function stars(value) {
  return String(value);
}

// Five stars filled to `value` out of 5: a picture only; the number beside it says it in text.
function starMeter(value) {
  const fill = h("span", { class: "meter-fill" }, "★★★★★");
  fill.style.width = `${Math.max(0, Math.min(100, (value / 5) * 100))}%`;
  return h("span", { class: "meter", "aria-hidden": "true" }, [h("span", { class: "meter-empty" }, "★★★★★"), fill]);
}

function formatScore(score) {
  return Math.abs(score) >= 100 ? number.format(Math.round(score)) : score.toFixed(3);
}

function movieHead(movie) {
  const { name, year } = splitTitle(movie.title);
  const genres = (movie.genres || []).filter((g) => g && g !== "(no genres listed)");
  return h("div", { class: "movie-main" }, [
    h("p", { class: "movie-title" }, [h("span", { class: "name" }, name), year && h("span", { class: "year" }, ` ${year}`)]),
    genres.length > 0 &&
      h(
        "ul",
        { class: "genres", "aria-label": "Genres" },
        genres.map((g) => h("li", {}, g)),
      ),
  ]);
}

function setStatus(node, text, kind = "info", retry = null) {
  node.replaceChildren(text);
  node.dataset.kind = text ? kind : "";
  if (retry) {
    node.append(" ", h("button", { type: "button", class: "link", onclick: retry }, "Try again"));
  }
}

// A list is "loading" while its request runs (the previous items stay, dimmed), then "ready",
// "empty" or "error"; `data-generation` counts finished loads (tests wait on it).
function listState(list, state) {
  list.dataset.state = state;
  list.setAttribute("aria-busy", state === "loading" ? "true" : "false");
  if (state !== "loading") list.dataset.generation = String(Number(list.dataset.generation || 0) + 1);
}

// ---------------------------------------------------------------------------------------------
// Lists of movies

function recommendationItem(item, { who, isNew = false }) {
  const because = item.because
    ? h("p", { class: "because", title: "The movie rated 4 stars or more that this one is closest to in the model's movie vectors" }, [
        "Close to ",
        h("cite", {}, item.because.title),
        `, which ${who} rated highly`,
      ])
    : null;
  return h("li", { class: `movie rec${isNew ? " new" : ""}`, "data-movie-id": item.movie_id }, [
    h("span", { class: "rank", "aria-hidden": "true" }, String(item.rank)),
    h("div", { class: "movie-body" }, [movieHead(item), because]),
    h("div", { class: "figures" }, [
      h("p", { class: "predicted" }, [
        starMeter(item.predicted_rating),
        h("span", { class: "value" }, item.predicted_rating.toFixed(2)),
        srOnly(" predicted stars"),
      ]),
      h("p", { class: "score", title: "The model's ranking score: larger is recommended first" }, [
        "score ",
        h("span", { class: "value" }, formatScore(item.score)),
      ]),
      isNew && h("p", { class: "badge" }, "new"),
    ]),
  ]);
}

function ratedItem(item, { onRemove } = {}) {
  const remove =
    onRemove && item.source === "feedback"
      ? h("button", { type: "button", class: "link remove", "aria-label": `Remove your rating of ${item.title}`, onclick: () => onRemove(item) }, "Remove")
      : null;
  return h("li", { class: "movie rated", "data-movie-id": item.movie_id }, [
    h("div", { class: "movie-body" }, [movieHead(item)]),
    h("div", { class: "figures" }, [
      h("p", { class: "predicted" }, [starMeter(item.rating), h("span", { class: "value" }, item.rating.toFixed(1)), srOnly(" stars")]),
      item.source === "feedback" && h("p", { class: "source" }, "rated here"),
      remove,
    ]),
  ]);
}

function searchItem(movie) {
  const mean = movie.mean_rating === null ? "" : `, mean ${movie.mean_rating.toFixed(1)} stars`;
  return h("li", { class: "movie found", "data-movie-id": movie.movie_id }, [
    h("div", { class: "movie-body" }, [
      movieHead(movie),
      h("p", { class: "counts" }, `${number.format(movie.ratings_count)} ratings${mean}`),
    ]),
    ratingControl(movie),
  ]);
}

// Ten radio buttons, one per half star: one Tab stop, arrows choose, Enter rates; a click on a
// star (its left half: a half star) rates at once.
function ratingControl(movie) {
  const name = `rate-${movie.movie_id}`;
  const readout = h("span", { class: "rate-value", "aria-hidden": "true" });
  const group = h("fieldset", { class: "rate", "data-movie-id": movie.movie_id, "aria-describedby": "rate-help" }, [
    h("legend", { class: "sr-only" }, `Your rating of ${movie.title}`),
  ]);
  const inputs = [];
  for (const value of STARS) {
    const id = `${name}-${value * 2}`;
    const input = h("input", { type: "radio", name, id, value, class: "sr-only" });
    const label = h("label", { for: id, class: `half ${value % 1 ? "left" : "right"}`, "data-value": value }, srOnly(`${stars(value)} stars`));
    label.addEventListener("click", (event) => {
      event.preventDefault(); // rate, then let the answer check the radio
      input.focus({ preventScroll: true });
      rate(movie, value);
    });
    label.addEventListener("mouseenter", () => paint(group, value));
    inputs.push(input);
    group.append(input, label);
  }
  group.append(readout);
  group.addEventListener("mouseleave", () => paint(group, savedRating(movie.movie_id)));
  group.addEventListener("change", (event) => paint(group, Number(event.target.value), true));
  group.addEventListener("focusout", (event) => {
    if (!group.contains(event.relatedTarget)) syncControl(group);
  });
  group.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.matches("input")) {
      event.preventDefault();
      rate(movie, Number(event.target.value));
    }
  });
  syncControl(group);
  return group;
}

function savedRating(movieId) {
  return fresh.ratings.get(movieId) ?? 0;
}

// Fills the stars up to `value`; `choosing`: a value picked by keyboard, not yet sent.
function paint(group, value, choosing = false) {
  for (const label of group.querySelectorAll("label")) {
    label.classList.toggle("on", Number(label.dataset.value) <= value);
  }
  const readout = group.querySelector(".rate-value");
  readout.textContent = value ? stars(value) : "–";
  readout.classList.toggle("choosing", choosing && value !== savedRating(Number(group.dataset.movieId)));
}

function syncControl(group) {
  const saved = savedRating(Number(group.dataset.movieId));
  for (const input of group.querySelectorAll("input")) input.checked = Number(input.value) === saved;
  paint(group, saved);
}

// ---------------------------------------------------------------------------------------------
// The model panel

const MODEL_ROWS = {
  model: "the served model, ranked by its ranking score",
  "model by rating": "the same model, ranked by predicted stars",
  "EASE (dense)": "EASE, an item-to-item model (dense weights)",
  "user+movie biases": "mean rating plus user and movie biases",
  "most popular": "the most-rated movies, for everyone",
  "global mean": "the mean rating, for everything",
};

let modelLoaded = null; // a promise of the metadata (or null when it failed)

function loadModel() {
  modelLoaded = (async () => {
    let model;
    try {
      model = await api("GET", "model");
    } catch (error) {
      setStatus($("model-status"), explain(error, { action: "describe the model" }), "error", loadModel);
      return null;
    }
    renderModel(model);
    loadLossPlot();
    return model;
  })();
  return modelLoaded;
}

function renderModel(model) {
  const data = model.data || {};
  const created = new Date(model.created_at);
  const facts = [
    ["Version", h("code", {}, model.version)],
    ["Trained", Number.isNaN(created.getTime()) ? model.created_at : `${created.toLocaleString("en-GB", WHEN)} (${ago(created)})`],
  ];
  if (data.ratings !== undefined) {
    const fromApi = data.ratings_from_feedback ? `, ${number.format(data.ratings_from_feedback)} of them given through this API` : "";
    const source = data.source ? `${String(data.source).split(/[\\/]/).pop()}: ` : "";
    facts.push([
      "On",
      `${source}${number.format(data.ratings)} ratings by ${number.format(data.users)} users of ${number.format(data.movies)} movies${fromApi}`,
    ]);
  }
  if (model.split && model.split.validation) {
    facts.push(["Evaluated on", `${number.format(model.split.validation)} held-out ratings`]);
  }
  $("model-facts").replaceChildren(...facts.flatMap(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
  $("top-version").textContent = `Model ${model.version}`;

  const metrics = model.metrics || {};
  const names = [...Object.keys(MODEL_ROWS).filter((n) => n in metrics), ...Object.keys(metrics).filter((n) => !(n in MODEL_ROWS))];
  const cell = (value, digits) =>
    typeof value === "number" ? h("td", {}, value.toFixed(digits)) : h("td", { class: "none" }, ["—", srOnly(" not measured")]);
  $("model-metrics").tBodies[0].replaceChildren(
    ...names.map((name) =>
      h("tr", { class: name === "model" ? "served" : "" }, [
        h("th", { scope: "row" }, [name, MODEL_ROWS[name] && h("span", { class: "note" }, MODEL_ROWS[name])]),
        cell(metrics[name].rmse, 4),
        cell(metrics[name]["ndcg@10"], 4),
      ]),
    ),
  );
  $("model-metrics").hidden = names.length === 0;
  setStatus($("model-status"), names.length ? "" : "This model's metadata has no evaluation figures.", "empty");
}

const WHEN = { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" };

function ago(date) {
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  const units = [
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
  ];
  for (const [unit, size] of units) {
    if (Math.abs(seconds) >= size) return new Intl.RelativeTimeFormat("en", { numeric: "auto" }).format(-Math.round(seconds / size), unit);
  }
  return "just now";
}

async function loadLossPlot() {
  const status = $("loss-status");
  try {
    const url = new URL("model/loss.png", document.baseURI);
    const response = await fetch(url, { cache: "no-store" });
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      throw new ApiError(response.status, detailOf(body), response.headers.get("Retry-After"));
    }
    const image = $("loss-image");
    image.src = URL.createObjectURL(await response.blob());
    await image.decode();
    $("loss-figure").hidden = false;
    setStatus(status, "");
  } catch (error) {
    const notFound = "This model's bundle has no loss plot (loss.png), so there is no loss curve to show.";
    setStatus(status, explain(error instanceof ApiError ? error : new ApiError(0), { action: "load the loss plot", notFound }), error.status === 404 ? "empty" : "error");
  }
}

// ---------------------------------------------------------------------------------------------
// Tabs and the address (#user=7&k=10 for a known user, #fresh&user=1234567 to start fresh)

const TABS = ["known", "fresh"];

function selectTab(name, { focus = false } = {}) {
  for (const tab of TABS) {
    const selected = tab === name;
    const button = $(`tab-${tab}`);
    button.setAttribute("aria-selected", String(selected));
    button.tabIndex = selected ? 0 : -1;
    $(`panel-${tab}`).hidden = !selected;
    if (selected && focus) button.focus();
  }
  if (name === "fresh") enterFresh();
  else setAddress(known.userId ? { user: known.userId, k: known.k, by: known.by } : {});
}

function setupTabs() {
  for (const tab of TABS) $(`tab-${tab}`).addEventListener("click", () => selectTab(tab));
  document.querySelector("[role=tablist]").addEventListener("keydown", (event) => {
    const current = TABS.findIndex((tab) => $(`tab-${tab}`).getAttribute("aria-selected") === "true");
    const moves = { ArrowRight: current + 1, ArrowLeft: current - 1, Home: 0, End: TABS.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    selectTab(TABS[(moves[event.key] + TABS.length) % TABS.length], { focus: true });
  });
}

function setAddress(values) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) params.set(name, value);
  const hash = params.toString().replace(/=(&|$)/g, "$1");
  history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
}

function readAddress() {
  return new URLSearchParams(location.hash.slice(1));
}

function parseId(text) {
  const trimmed = String(text).trim();
  if (!/^[0-9]{1,16}$/.test(trimmed)) return null;
  const id = Number(trimmed);
  return id >= 1 && id <= Number.MAX_SAFE_INTEGER ? id : null;
}

function parseK(text) {
  const k = Number(text);
  return Number.isInteger(k) && k >= 1 && k <= 100 ? k : null;
}

// ---------------------------------------------------------------------------------------------
// Be a known user

const known = { userId: null, k: 10, by: "ranking", seq: 0 };

async function showKnown() {
  const status = $("known-status");
  const id = parseId($("known-id").value);
  const k = parseK($("known-k").value);
  if (id === null) {
    setStatus(status, "Enter a user id: a whole number from 1.", "error");
    $("known-id").focus();
    return;
  }
  if (k === null) {
    setStatus(status, "How many: a whole number from 1 to 100.", "error");
    $("known-k").focus();
    return;
  }
  Object.assign(known, { userId: id, k, by: $("known-by").value });
  setStatus(status, "");
  setAddress({ user: id, k, by: known.by });
  const seq = ++known.seq;
  const rated = $("known-rated");
  const recs = $("known-recs");
  listState(rated, "loading");
  listState(recs, "loading");
  setStatus($("known-rated-status"), `Loading the ratings of user ${id}…`, "loading");
  setStatus($("known-recs-status"), `Loading the recommendations for user ${id}…`, "loading");
  const [ratings, recommendations] = await Promise.allSettled([
    api("GET", `users/${id}/ratings`, { params: { limit: k } }),
    api("GET", `users/${id}/recommendations`, { params: { k, rank_by: known.by, explain: "true" } }),
  ]);
  if (seq !== known.seq) return; // a newer request took over
  const notFound = `No user ${id}: the data set the model was trained on does not have them, and no ratings are stored for them. Try another id, pick one at random, or start fresh.`;
  showOutcome(ratings, rated, $("known-rated-status"), {
    action: `load the ratings of user ${id}`,
    notFound,
    retry: showKnown,
    render: (body) => {
      const note = body.feedback === "unavailable" ? " The feedback database is unavailable: only the data set's ratings are shown." : "";
      return [body.ratings.map((item) => ratedItem(item)), `Their ${body.ratings.length} highest-rated movies, best first.${note}`];
    },
  });
  showOutcome(recommendations, recs, $("known-recs-status"), {
    action: `load the recommendations for user ${id}`,
    notFound,
    retry: showKnown,
    render: (body) => [body.recommendations.map((item) => recommendationItem(item, { who: "they" })), describeListing(body, known.by)],
  });
}

function showOutcome(outcome, list, status, { action, notFound, retry, render, emptyKind = "error" }) {
  if (outcome.status === "fulfilled") {
    const [items, text] = render(outcome.value);
    list.replaceChildren(...items);
    setStatus(status, text, "info");
    listState(list, items.length ? "ready" : "empty");
    return;
  }
  const error = outcome.reason;
  if (!(error instanceof ApiError)) throw error;
  list.replaceChildren();
  const kind = error.status === 404 ? emptyKind : "error";
  setStatus(status, explain(error, { action, notFound }), kind, error.status === 404 ? null : retry);
  listState(list, kind === "empty" ? "empty" : "error");
}

const SOURCES = {
  model: "scored by the model, which was trained on their ratings",
  "fold-in": "fitted on the fly to the ratings stored through the API (fold-in)",
  popular: "the most popular movies (no ratings to go on)",
};

function describeListing(body, by, extra = "") {
  const order = by === "rating" ? "highest predicted stars first" : "best first";
  const source = SOURCES[body.source] || body.source;
  return `${body.recommendations.length} movies, ${order}: ${source}.${extra}`;
}

async function pickKnown() {
  const status = $("known-status");
  setStatus(status, "Picking a user at random…", "loading");
  const model = await (modelLoaded || loadModel());
  const users = model && model.data && model.data.users;
  if (!users) {
    setStatus(status, "Could not pick a user: the model's description is unavailable. Enter an id instead.", "error");
    return;
  }
  for (let attempt = 0; attempt < 8; attempt++) {
    const id = 1 + Math.floor(Math.random() * users);
    try {
      await api("GET", `users/${id}/ratings`, { params: { limit: 1 } });
    } catch (error) {
      if (error.status === 404) continue;
      setStatus(status, explain(error, { action: "pick a user" }), "error", pickKnown);
      return;
    }
    $("known-id").value = String(id);
    await showKnown();
    return;
  }
  setStatus(status, "Could not find a user at random; enter an id instead.", "error");
}

// ---------------------------------------------------------------------------------------------
// Start fresh

const fresh = { userId: null, ratings: new Map(), previous: null, seq: 0, searchSeq: 0, retry: null, searched: false };

async function enterFresh() {
  if (fresh.userId === null) {
    const address = readAddress(); // #fresh&user=...; a known user's #user=... is not yours
    const linked = address.has("fresh") ? parseId(address.get("user") || "") : null;
    const wanted = linked ?? parseId(remembered("local", FRESH_KEY) || "");
    if (wanted !== null) useFreshId(wanted);
    else await newFreshId();
  } else {
    setAddress({ fresh: "", user: fresh.userId });
  }
  if (!fresh.searched) {
    fresh.searched = true;
    search("");
  }
}

async function newFreshId() {
  const status = $("fresh-status");
  setStatus(status, "Choosing a new user id…", "loading");
  for (let attempt = 0; attempt < 5; attempt++) {
    const id = FRESH_ID_MIN + Math.floor(Math.random() * (FRESH_ID_MAX - FRESH_ID_MIN + 1));
    try {
      await api("GET", `users/${id}/ratings`, { params: { limit: 1 } });
      continue; // someone has this id already
    } catch (error) {
      if (error.status !== 404) {
        setStatus(status, explain(error, { action: "check that a new user id is free" }), "error", newFreshId);
        return;
      }
    }
    setStatus(status, "");
    useFreshId(id);
    return;
  }
  setStatus(status, "Could not find a free user id; type one instead.", "error");
}

function useFreshId(id) {
  fresh.userId = id;
  fresh.previous = null;
  fresh.ratings = new Map();
  $("fresh-id").value = String(id);
  remember("local", FRESH_KEY, String(id));
  setAddress({ fresh: "", user: id });
  refreshFresh();
}

async function refreshFresh() {
  const id = fresh.userId;
  const k = parseK($("fresh-k").value) ?? 10;
  const seq = ++fresh.seq;
  const rated = $("fresh-rated");
  const recs = $("fresh-recs");
  listState(rated, "loading");
  listState(recs, "loading");
  setStatus($("fresh-recs-status"), "Updating your recommendations…", "loading");
  setStatus($("fresh-rated-status"), "Loading your ratings…", "loading");
  const [ratings, recommendations] = await Promise.allSettled([
    api("GET", `users/${id}/ratings`, { params: { limit: FRESH_RATINGS_LIMIT } }),
    api("GET", `users/${id}/recommendations`, { params: { k, explain: "true" } }),
  ]);
  if (seq !== fresh.seq) return;
  if (ratings.status === "fulfilled") {
    fresh.ratings = new Map(ratings.value.ratings.map((item) => [item.movie_id, item.rating]));
  } else if (ratings.reason.status === 404) {
    fresh.ratings = new Map();
  }
  for (const group of document.querySelectorAll("#search-results .rate")) syncControl(group);
  showOutcome(ratings, rated, $("fresh-rated-status"), {
    action: "load your ratings",
    notFound: "You have not rated anything yet.",
    emptyKind: "empty",
    retry: refreshFresh,
    render: (body) => [
      body.ratings.map((item) => ratedItem(item, { onRemove: unrate })),
      `${body.ratings.length} ${body.ratings.length === 1 ? "rating" : "ratings"}, best first.`,
    ],
  });
  const previous = fresh.previous;
  showOutcome(recommendations, recs, $("fresh-recs-status"), {
    action: "load your recommendations",
    notFound: "No ratings yet: rate a movie or two (find them on the left) and your recommendations appear here.",
    emptyKind: "empty",
    retry: refreshFresh,
    render: (body) => {
      const items = body.recommendations;
      const isNew = (item) => previous !== null && !previous.has(item.movie_id);
      const added = items.filter(isNew).length;
      const change = previous === null ? "" : added ? ` ${added} new since your last change.` : " The same movies as before.";
      fresh.previous = new Set(items.map((item) => item.movie_id));
      return [items.map((item) => recommendationItem(item, { who: "you", isNew: isNew(item) })), describeListing(body, "ranking", change)];
    },
  });
  if (recommendations.status === "rejected" && recommendations.reason.status === 404) fresh.previous = new Set();
}

async function rate(movie, value) {
  const status = $("search-status");
  const title = movie.title;
  setStatus(status, `Saving your rating of ${title}: ${stars(value)} stars…`, "loading");
  try {
    await api("PUT", `users/${fresh.userId}/ratings/${movie.movie_id}`, { body: { rating: value } });
  } catch (error) {
    for (const group of document.querySelectorAll("#search-results .rate")) syncControl(group);
    if (error.status === 401) {
      askForToken(() => rate(movie, value));
      setStatus(status, `Not saved: storing ratings on this server needs a token (401 Unauthorized). Enter it above.`, "error");
      return;
    }
    setStatus(status, explain(error, { action: `save your rating of ${title}` }), "error", () => rate(movie, value));
    return;
  }
  fresh.ratings.set(movie.movie_id, value);
  for (const group of document.querySelectorAll(`#search-results .rate[data-movie-id="${movie.movie_id}"]`)) syncControl(group);
  setStatus(status, `Saved: ${title}, ${stars(value)} stars.`, "info");
  await refreshFresh();
}

async function unrate(item) {
  const status = $("fresh-rated-status");
  try {
    await api("DELETE", `users/${fresh.userId}/ratings/${item.movie_id}`);
  } catch (error) {
    if (error.status === 401) {
      askForToken(() => unrate(item));
      setStatus(status, "Not removed: this server needs a token for that (401 Unauthorized). Enter it above.", "error");
      return;
    }
    if (error.status !== 404) {
      setStatus(status, explain(error, { action: `remove your rating of ${item.title}` }), "error", () => unrate(item));
      return;
    }
  }
  await refreshFresh();
  setStatus($("search-status"), `Removed your rating of ${item.title}.`, "info");
  $("fresh-rated-heading").focus(); // its button is gone: keep the keyboard's place nearby
}

function askForToken(retry) {
  fresh.retry = retry;
  const form = $("token-form");
  const refused = remembered("session", TOKEN_KEY) !== null;
  $("token-why").textContent = refused
    ? "The server refused the token (401 Unauthorized). Check it and enter it again; it is kept in this browser tab only."
    : "This server needs a token to store ratings: it answered 401 Unauthorized. Enter the token (API_TOKEN) to go on; it is kept in this browser tab only.";
  form.hidden = false;
  $("token").focus();
}

function setupFresh() {
  $("fresh-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = parseId($("fresh-id").value);
    if (id === null) {
      setStatus($("fresh-status"), "Enter a user id: a whole number from 1.", "error");
      $("fresh-id").focus();
      return;
    }
    if (parseK($("fresh-k").value) === null) {
      setStatus($("fresh-status"), "How many: a whole number from 1 to 100.", "error");
      $("fresh-k").focus();
      return;
    }
    setStatus($("fresh-status"), "");
    if (id === fresh.userId) refreshFresh();
    else useFreshId(id);
  });
  $("fresh-new").addEventListener("click", () => newFreshId());
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) {
      $("token").focus();
      return;
    }
    remember("session", TOKEN_KEY, token);
    $("token").value = "";
    $("token-form").hidden = true;
    const retry = fresh.retry;
    fresh.retry = null;
    if (retry) retry();
  });
  let timer = null;
  $("search-query").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => search($("search-query").value), SEARCH_DELAY_MS);
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    search($("search-query").value);
  });
}

async function search(text) {
  const query = text.trim();
  const seq = ++fresh.searchSeq;
  const list = $("search-results");
  const status = $("search-status");
  listState(list, "loading");
  setStatus(status, query ? `Searching for “${query}”…` : "Loading the most-rated movies…", "loading");
  let body;
  try {
    body = await api("GET", "movies", { params: { query, limit: SEARCH_LIMIT } });
  } catch (error) {
    if (seq !== fresh.searchSeq) return;
    list.replaceChildren();
    setStatus(status, explain(error, { action: "search the movies" }), "error", () => search(text));
    listState(list, "error");
    return;
  }
  if (seq !== fresh.searchSeq) return;
  list.replaceChildren(...body.movies.map(searchItem));
  if (body.movies.length === 0) {
    setStatus(status, `No title has every word of “${query}”. Try fewer or other words.`, "empty");
  } else if (query && body.movies.length === SEARCH_LIMIT) {
    setStatus(status, `The ${SEARCH_LIMIT} most-rated titles that match “${query}”; more words narrow the search.`);
  } else if (query) {
    setStatus(status, `${body.movies.length} ${body.movies.length === 1 ? "title matches" : "titles match"} “${query}”, most-rated first.`);
  } else {
    setStatus(status, "The most-rated movies. Search for others by title.");
  }
  listState(list, body.movies.length ? "ready" : "empty");
}

// ---------------------------------------------------------------------------------------------

function start() {
  setupTabs();
  setupFresh();
  $("known-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showKnown();
  });
  $("known-pick").addEventListener("click", () => pickKnown());
  loadModel();
  const address = readAddress();
  if (address.has("fresh")) {
    const k = parseK(address.get("k") || "");
    if (k) $("fresh-k").value = String(k);
    selectTab("fresh");
  } else if (address.has("user")) {
    $("known-id").value = address.get("user");
    const k = parseK(address.get("k") || "");
    if (k) $("known-k").value = String(k);
    if (address.get("by") === "rating") $("known-by").value = "rating";
    showKnown();
  }
  document.body.dataset.ready = "true";
}

start();
