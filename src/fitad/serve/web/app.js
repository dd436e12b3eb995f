/* Fit-AD ad maker: the shop owner's page. Plain JS, no build step; everything it loads comes from this origin. */
"use strict";

// ---------------------------------------------------------------- strings (all UI text lives here)
const STRINGS = {
  ko: {
    title: "Fit-AD 광고 만들기", tagline: "휴대폰 사진 한 장으로 인스타그램에 바로 올릴 광고를 만들어 보세요.", skip: "바로 만들기로 가기",
    langToggle: "English", apiKeyLabel: "API 키", apiKeyPh: "키가 있으면 붙여 넣으세요", apiKeyHelp: "키는 이 기기에만 저장돼요.",
    saveKey: "저장", clearKey: "지우기", keySaved: "키를 저장했어요.",
    keyBadChars: "API 키에 쓸 수 없는 글자가 있어요. 받은 키를 그대로 붙여 넣어 주세요.", keyCleared: "키를 지웠어요.", quotaLoading: "남은 광고 수를 확인하는 중…",
    quotaFree: (left, total) => `오늘 남은 무료 광고: ${left}/${total}장`, quotaPaid: (tier) => `${tier} 요금제: 워터마크 없이 원본 크기`,
    quotaNeedKey: "API 키를 입력해 주세요.", quotaBadKey: "API 키를 입력해 주세요. 저장된 키가 맞지 않아요.",
    quotaFailed: "남은 광고 수를 확인하지 못했어요.", watermarkNotice: (side) => `무료 이용 시 워터마크가 들어가고 크기가 최대 ${side}px로 줄어요.`,
    stepMode: "무엇을 만들까요?", modePerson: "인물 모드", modePersonDesc: "내 사진으로 광고 — 얼굴은 그대로",
    modeProduct: "제품 모드", modeProductDesc: "제품 사진으로 광고 — 제품은 그대로", modeAdvanced: "고급 모드", modeAdvancedDesc: "인물 + 제품",
    modeTxt2img: "텍스트로 만들기", modeTxt2imgDesc: "사진 없이 설명으로",
    modeCompose: "문구만 넣기", modeComposeDesc: "내 사진에 문구만 올리기", stepPhoto: "사진 올리기",
    photoTitle_person: "인물 사진", photoTitle_product: "제품 사진", photoTitle_advanced: "인물 사진", photoTitle_compose: "내 사진",
    productPhotoTitle: "제품 사진", dropText: "눌러서 사진 고르기", dropTextChange: "다른 사진으로 바꾸려면 누르세요",
    dropHint: (mb) => `JPG·PNG, 최대 ${mb} MB · 여기에 끌어다 놓아도 돼요`, previewAlt: "선택한 사진 미리보기", stepShop: "가게 정보",
    industryLabel: "업종", shopNameLabel: "가게 이름", shopNamePh: "예: 달빛 커피", stepFormat: "광고 크기",
    fmt_instagram_square: "1:1 인스타 피드", fmt_instagram_portrait: "4:5 인스타 세로",
    fmt_instagram_story: "9:16 스토리·릴스", fmt_facebook_link: "페이스북", fmt_kakao_square: "카카오", stepText: "광고 문구",
    headlineLabel: "헤드라인", headlinePh: "예: 가을 신메뉴 출시!", subcopyLabel: "보조 문구", subcopyPh: "예: 이번 주 아메리카노 20% 할인",
    promptHelpTxt: "사진 없이 이 설명만으로 그림을 그려요. 무엇을 어떤 분위기로 그릴지 적어 주세요.", promptOptional: "추가 설명 (선택)",
    promptRequired: "설명 (꼭 적어 주세요)", promptPh: "예: 햇살 드는 창가의 라떼와 크루아상", promptHelp: "어떤 분위기의 그림을 원하는지 적어 주세요.",
    moreSettings: "더 보기", seedLabel: "시드 (선택)", seedHelp: "같은 시드와 같은 입력이면 같은 그림이 나와요. 비워 두면 매번 새로 골라요.",
    generate: "광고 만들기", reasonLoading: "준비하는 중이에요…", reasonRendering: "광고를 만드는 중이에요. 잠시만 기다려 주세요.",
    reasonPhoto_person: "인물 사진을 올려 주세요.", reasonPhoto_advanced: "인물 사진을 올려 주세요.",
    reasonPhoto_product: "제품 사진을 올려 주세요.", reasonPhoto_compose: "사진을 올려 주세요.",
    reasonPhotos: "인물 사진과 제품 사진을 모두 올려 주세요.", reasonPrompt: "설명을 적어 주세요.",
    reasonTotalSize: (mb) => `두 사진을 합쳐 ${mb} MB까지 올릴 수 있어요. 더 작은 사진을 골라 주세요.`,
    productPreviewAlt: "선택한 제품 사진 미리보기",
    progressLabel: "진행 상황", progWaiting: "준비하는 중…", progQueued: "차례를 기다리는 중…",
    progStep: (i, n) => `그리는 중… ${i}/${n} 단계`, progFinishing: "마무리하는 중…", resultTitle: "완성된 광고",
    resultAlt: (h) => `만든 광고 이미지: ${h}`, resultAltEmpty: "만든 광고 이미지", download: "이미지 저장하기",
    metaLine: (seed, lora) => `시드: ${seed} · LoRA: ${lora}`, noLora: "기본 모델",
    resultWatermark: (side) => `무료 이용이라 워터마크가 들어가고 크기가 최대 ${side}px로 줄었어요. API 키가 있으면 원본 크기로 받을 수 있어요.`,
    again: "다른 시드로 다시 만들기", captionTitle: "인스타그램 글", hashtagsTitle: "해시태그", copy: "복사하기", copied: "복사했어요",
    copyFailed: "복사하지 못했어요. 글을 길게 눌러 직접 복사해 주세요.", copyLoading: "글을 쓰는 중…", copyUnavailable: "추천 글을 불러오지 못했어요.",
    footer: "Fit-AD · 작은 가게를 위한 광고 만들기",
    errQuota: (n) => `오늘 무료로 만들 수 있는 광고 ${n}장을 모두 사용했어요. 내일 다시 오시거나 API 키를 입력해 주세요.`,
    errBusy: (s) => `지금 요청이 많아요. ${s ? s + "초" : "몇 초"} 뒤에 다시 눌러 주세요.`,
    errUnauthorized: "API 키가 필요하거나 맞지 않아요. 위의 API 키 칸을 확인해 주세요.", errForbidden: "이 키로는 이 기능을 쓸 수 없어요.",
    errImage: "사진을 읽을 수 없어요. JPG나 PNG 사진을 써 주세요.", errTooLarge: (mb) => `사진이 너무 커요 (최대 ${mb} MB).`,
    errField: (name) => `입력한 내용을 확인해 주세요: ${name}`, errNoProduct: "사진에서 제품을 찾지 못했어요. 배경과 제품이 잘 구분되는 사진을 써 주세요.",
    errNoFace: "사진에서 얼굴을 찾지 못했어요. 얼굴이 잘 보이는 사진을 써 주세요.", errNotReady: "서비스를 준비하는 중이에요. 1분 뒤에 다시 해 주세요.",
    errNotFound: "요청한 것을 찾지 못했어요. 페이지를 새로 고침해 주세요.", errRequest: "요청을 보내는 중에 문제가 생겼어요. 다시 해 주세요.",
    errNetwork: "서버에 연결할 수 없어요. 인터넷 연결을 확인하고 다시 해 주세요.",
    errUnknown: (rid) => `알 수 없는 문제가 생겼어요.${rid ? ` (요청 번호: ${rid})` : ""}`, errType: "JPG나 PNG 사진만 올릴 수 있어요.",
    errSmall: (px) => `사진이 너무 작아요. 가로와 세로가 ${px}픽셀 이상인 사진을 써 주세요.`,
    errPixels: (mp) => `사진 해상도가 너무 높아요 (최대 ${mp * 100}만 화소). 조금 줄여서 올려 주세요.`,
    errOptions: "페이지를 준비하지 못했어요. 잠시 뒤 새로 고침해 주세요.",
    field: { headline: "헤드라인", subcopy: "보조 문구", prompt: "설명", format: "크기", industry: "업종",
             image: "사진", product_image: "제품 사진", shop_name: "가게 이름", seed: "시드", lang: "언어" },
    fieldOther: "입력 내용",
  },
  en: {
    title: "Fit-AD ad maker", tagline: "Turn one phone photo into an ad that is ready for Instagram.",
    skip: "Skip to the ad maker", langToggle: "한국어", apiKeyLabel: "API key",
    apiKeyPh: "Paste your key if you have one", apiKeyHelp: "The key is kept on this device only.", saveKey: "Save",
    clearKey: "Clear", keySaved: "Key saved.", keyCleared: "Key cleared.",
    keyBadChars: "The API key has characters a key cannot have. Paste the key exactly as you received it.",
    quotaLoading: "Checking how many ads are left…",
    quotaFree: (left, total) => `Free ads left today: ${left} of ${total}`,
    quotaPaid: (tier) => `${tier} plan: no watermark, full size`, quotaNeedKey: "Please enter your API key.",
    quotaBadKey: "Please enter your API key. The saved key is not right.",
    quotaFailed: "Could not check how many ads are left.",
    watermarkNotice: (side) => `Free ads carry a watermark and are made at most ${side}px.`,
    stepMode: "What would you like to make?",
    modePerson: "Person", modePersonDesc: "An ad from your photo — the face stays the same",
    modeProduct: "Product", modeProductDesc: "An ad from a product photo — the product stays the same",
    modeAdvanced: "Advanced", modeAdvancedDesc: "Person + product",
    modeTxt2img: "From text", modeTxt2imgDesc: "No photo, just a description",
    modeCompose: "Words only", modeComposeDesc: "Put your words on your own photo", stepPhoto: "Add photos",
    photoTitle_person: "Photo of the person", photoTitle_product: "Product photo",
    photoTitle_advanced: "Photo of the person", photoTitle_compose: "Your photo", productPhotoTitle: "Product photo",
    dropText: "Tap to choose a photo", dropTextChange: "Tap to choose another photo",
    dropHint: (mb) => `JPG or PNG, up to ${mb} MB · you can also drop it here`,
    previewAlt: "Preview of the chosen photo", stepShop: "Your shop", industryLabel: "Business type",
    shopNameLabel: "Shop name", shopNamePh: "e.g. Moonlight Coffee", stepFormat: "Ad size",
    fmt_instagram_square: "1:1 Instagram feed", fmt_instagram_portrait: "4:5 Instagram portrait",
    fmt_instagram_story: "9:16 Story / Reels", fmt_facebook_link: "Facebook", fmt_kakao_square: "Kakao",
    stepText: "Words on the ad", headlineLabel: "Headline", headlinePh: "e.g. New autumn menu!",
    subcopyLabel: "Sub-copy", subcopyPh: "e.g. 20% off americano this week",
    promptHelpTxt: "No photo needed: the picture is drawn from this description. Say what to show and the mood.",
    promptOptional: "Extra description (optional)", promptRequired: "Description (required)",
    promptPh: "e.g. a latte and a croissant by a sunny window",
    promptHelp: "Describe the picture and the mood you want.", moreSettings: "More settings",
    seedLabel: "Seed (optional)",
    seedHelp: "The same seed and inputs give the same picture. Leave it empty for a new one each time.",
    generate: "Make my ad", reasonLoading: "Getting ready…", reasonRendering: "Making your ad. Please wait a moment.",
    reasonPhoto_person: "Please add a photo of the person.", reasonPhoto_advanced: "Please add a photo of the person.",
    reasonPhoto_product: "Please add a product photo.", reasonPhoto_compose: "Please add your photo.",
    reasonPhotos: "Please add both the person photo and the product photo.",
    reasonTotalSize: (mb) => `Both photos together can be at most ${mb} MB. Please choose smaller photos.`,
    productPreviewAlt: "Preview of the chosen product photo",
    reasonPrompt: "Please write a description.", progressLabel: "Progress", progWaiting: "Getting ready…",
    progQueued: "Waiting for our turn…", progStep: (i, n) => `Rendering… step ${i} of ${n}`,
    progFinishing: "Finishing…", resultTitle: "Your ad", resultAlt: (h) => `The generated ad: ${h}`, resultAltEmpty: "The generated ad",
    download: "Save the image", metaLine: (seed, lora) => `Seed: ${seed} · LoRA: ${lora}`, noLora: "base model",
    resultWatermark: (side) => `Free ads carry a watermark and are made at most ${side}px. With an API key you get the full size.`,
    again: "Again with another seed", captionTitle: "Instagram post", hashtagsTitle: "Hashtags", copy: "Copy",
    copied: "Copied", copyFailed: "Could not copy. Please select the text and copy it yourself.",
    copyLoading: "Writing your post…", copyUnavailable: "Could not load a suggested post.",
    footer: "Fit-AD · ads for small shops",
    errQuota: (n) => `You have used all ${n} free ads for today. Come back tomorrow or enter an API key.`,
    errBusy: (s) => `Lots of people are making ads right now. Please try again in ${s ? s + " seconds" : "a few seconds"}.`,
    errUnauthorized: "An API key is needed, or the key is not right. Please check the API key field above.",
    errForbidden: "This key cannot use this feature.",
    errImage: "The photo could not be read. Please use a JPG or PNG photo.",
    errTooLarge: (mb) => `The photo is too big (at most ${mb} MB).`,
    errField: (name) => `Please check this input: ${name}`,
    errNoProduct: "We could not find a product in the photo. Please use a photo where the product stands out from the background.",
    errNoFace: "We could not find a face in the photo. Please use a photo where the face is clearly visible.",
    errNotReady: "The service is getting ready. Please try again in a minute.",
    errNotFound: "That could not be found. Please reload the page.",
    errRequest: "Something went wrong with the request. Please try again.",
    errNetwork: "Cannot reach the server. Please check your connection and try again.",
    errUnknown: (rid) => `Something unexpected went wrong.${rid ? ` (request number: ${rid})` : ""}`,
    errType: "Only JPG or PNG photos can be used.",
    errSmall: (px) => `The photo is too small. Please use one at least ${px} pixels wide and high.`,
    errPixels: (mp) => `The photo has too many pixels (at most ${mp} megapixels). Please use a smaller one.`,
    errOptions: "The page could not get ready. Please reload in a moment.",
    field: { headline: "headline", subcopy: "sub-copy", prompt: "description", format: "size", industry: "business type",
             image: "photo", product_image: "product photo", shop_name: "shop name", seed: "seed", lang: "language" },
    fieldOther: "the input",
  },
};

const ROUTES = { person: "/ad/person", product: "/ad/product", advanced: "/ad/advanced",
                 compose: "/ad/compose", txt2img: "/txt2img" };
const PHOTO_TYPES = ["image/jpeg", "image/png"];
const POLL_MS = 300;
const MAX_SEED = 4294967295;

// ---------------------------------------------------------------- state
const state = {
  options: null,
  lang: readStore("fitad.lang") === "en" ? "en" : "ko",
  apiKey: readStore("fitad.apiKey") || "",
  quota: { kind: "loading" },          // loading | free | paid | needKey | badKey | failed
  photos: { photo: null, product: null },  // {file, url, w, h} once checked
  photoTokens: { photo: 0, product: 0 },   // so a slow check of an older file cannot win
  busy: false,
  error: null,                         // {key, args} so it can be re-worded on a language change
  progress: null,                      // last /jobs/progress answer (null: not known yet)
  last: null,                          // the inputs of the last successful render, for "again"
  result: null,                        // {url, meta, headline, copy, copyFailed}
};

const $ = (sel) => document.querySelector(sel);
const $$ = (sel) => Array.from(document.querySelectorAll(sel));

function readStore(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}
function writeStore(key, value) {
  try { value == null ? localStorage.removeItem(key) : localStorage.setItem(key, value); } catch { /* private mode */ }
}

function t(key, ...args) {
  const value = STRINGS[state.lang][key] ?? STRINGS.ko[key] ?? key;
  return typeof value === "function" ? value(...args) : value;
}

function setPageState(name) { document.body.dataset.state = name; }

function mode() { return ($("input[name=mode]:checked") || {}).value || "product"; }
function format() { return ($("input[name=format]:checked") || {}).value || "instagram_square"; }
function limits() { return state.options.limits; }
function megabytes(bytes) { return Math.floor(bytes / 104857.6) / 10; }

// ---------------------------------------------------------------- i18n
function applyLanguage() {
  document.documentElement.lang = state.lang;
  document.title = t("title");
  $$("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $$("[data-i18n-ph]").forEach((el) => { el.placeholder = t(el.dataset.i18nPh); });
  $$("[data-i18n-alt]").forEach((el) => { el.alt = t(el.dataset.i18nAlt); });
  $$("[data-i18n-aria]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nAria)));
  const toggle = $("#lang-toggle");
  toggle.textContent = t("langToggle");        // names the other language, in that language
  $$(".copied, #key-status").forEach((el) => { el.textContent = ""; });   // short-lived notes, not re-worded
  toggle.lang = state.lang === "ko" ? "en" : "ko";
  if (state.options) {
    fillIndustries();
    $$(".drop-hint").forEach((el) => { el.textContent = t("dropHint", megabytes(limits().max_upload_bytes)); });
  }
  renderQuota();
  renderError();
  renderProgress();
  renderResult();
  updateForm();
}

// ---------------------------------------------------------------- building the choices from options.json
function fillIndustries() {
  const select = $("#industry");
  const chosen = select.value || (state.options.industries[0] || {}).id;
  select.textContent = "";
  for (const ind of state.options.industries) {
    const opt = document.createElement("option");
    opt.value = ind.id;
    opt.textContent = state.lang === "ko" ? ind.ko : ind.en;
    select.append(opt);
  }
  select.value = chosen;
}

function buildFormats() {
  const box = $("#format-cards");
  box.textContent = "";
  for (const f of state.options.formats) {
    const label = document.createElement("label");
    label.className = "card";
    const input = document.createElement("input");
    Object.assign(input, { type: "radio", name: "format", value: f.key, className: "card-input" });
    input.checked = f.key === "instagram_square";
    const body = document.createElement("span");
    body.className = "card-body";
    const slot = document.createElement("span");
    slot.className = "ratio-slot";
    slot.setAttribute("aria-hidden", "true");
    const ratio = document.createElement("span");
    ratio.className = "ratio-box";
    // A 48 px box scaled to the format's aspect ratio (CSSOM styles are allowed under the CSP).
    const scale = 48 / Math.max(f.width, f.height);
    ratio.style.width = `${Math.round(f.width * scale)}px`;
    ratio.style.height = `${Math.round(f.height * scale)}px`;
    slot.append(ratio);
    const name = document.createElement("span");
    name.className = "card-title";
    if (STRINGS.ko[`fmt_${f.key}`]) name.dataset.i18n = `fmt_${f.key}`;
    else name.textContent = f.label;   // a format this page has no words for
    const size = document.createElement("span");
    size.className = "fmt-size";
    size.textContent = `${f.width}×${f.height}`;
    body.append(slot, name, size);
    label.append(input, body);
    box.append(label);
  }
  if (!$("input[name=format]:checked")) $("input[name=format]").checked = true;
}

// ---------------------------------------------------------------- talking to the service
class Failure extends Error {
  constructor(info) { super(info.code || "failure"); Object.assign(this, info); }
}

function authHeaders() {
  return state.apiKey ? { Authorization: `Bearer ${state.apiKey}` } : {};
}

// POST `body` (FormData as multipart, anything else as JSON); throws a Failure on a refusal or no answer.
async function post(path, body, extraHeaders = {}) {
  const headers = { ...authHeaders(), ...extraHeaders };
  let payload = body;
  if (!(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body || {});
  }
  let res;
  try {
    res = await fetch(path, { method: "POST", headers, body: payload, credentials: "same-origin" });
  } catch {
    throw new Failure({ code: "network" });
  }
  if (!res.ok) {
    let err = {};
    try { err = ((await res.json()) || {}).error || {}; } catch { /* not JSON */ }
    throw new Failure({ status: res.status, code: err.code || "", field: err.field || null,
                        message: err.message || "", requestId: err.request_id || res.headers.get("X-Request-Id") || "",
                        retryAfter: res.headers.get("Retry-After") });
  }
  return res;
}

// A refusal as {key, args} of STRINGS: a plain sentence, never the server's own words.
function describeFailure(f) {
  const opts = state.options || { free_tier: { daily_images: 3 }, limits: { max_upload_bytes: 0 } };
  switch (f.code) {
    case "network": return { key: "errNetwork" };
    case "quota_exceeded": return { key: "errQuota", args: [opts.free_tier.daily_images] };
    case "busy": return { key: "errBusy", args: [parseInt(f.retryAfter, 10) || 0] };
    case "unauthorized": return { key: "errUnauthorized" };
    case "forbidden": return { key: "errForbidden" };
    case "invalid_image": case "empty_upload": case "unsupported_media_type": return { key: "errImage" };
    case "payload_too_large": return { key: "errTooLarge", args: [megabytes(opts.limits.max_upload_bytes)] };
    case "not_ready": return { key: "errNotReady" };
    case "not_found": return { key: "errNotFound" };
    case "invalid_multipart": case "invalid_request": return { key: "errRequest" };
    case "invalid_field": {
      // The server's message is only matched, never shown: it says why a photo was refused.
      if (/no product found/i.test(f.message)) return { key: "errNoProduct" };
      if (/no face found/i.test(f.message)) return { key: "errNoFace" };
      return { key: "errField", args: [{ field: String(f.field || "").split(".")[0] }] };
    }
    default:
      if (!f.code && f.status === 401) return { key: "errUnauthorized" };
      if (!f.code && f.status === 413) return { key: "errTooLarge", args: [megabytes(opts.limits.max_upload_bytes)] };
      return { key: "errUnknown", args: [f.requestId || ""] };
  }
}

// ---------------------------------------------------------------- errors
function showError(err) {
  state.error = err;
  renderError();
}
function clearError() { showError(null); }

function renderError() {
  const el = $("#error");
  if (!state.error) {
    el.textContent = "";
    el.hidden = true;
    return;
  }
  const { key, args = [] } = state.error;
  // errField carries the field id; its plain name is looked up in the current language.
  const shown = key === "errField"
    ? t(key, STRINGS[state.lang].field[args[0].field] || t("fieldOther"))
    : t(key, ...args);
  el.textContent = shown;
  el.hidden = false;
}

// ---------------------------------------------------------------- quota
async function refreshQuota() {
  try {
    const q = await (await post("/quota", {})).json();
    state.quota = q.daily_limit == null ? { kind: "paid", tier: q.tier } : { kind: "free", ...q };
  } catch (f) {
    if (f.status === 401) state.quota = { kind: state.apiKey ? "badKey" : "needKey" };
    else state.quota = { kind: "failed" };
  }
  renderQuota();
}

function renderQuota() {
  const q = state.quota;
  const line = $("#quota");
  const notice = $("#watermark-notice");
  if (q.kind === "free") line.textContent = t("quotaFree", q.remaining, q.daily_limit);
  else if (q.kind === "paid") {
    const tier = String(q.tier || "pro");
    line.textContent = t("quotaPaid", tier.charAt(0).toUpperCase() + tier.slice(1));
  } else if (q.kind === "needKey") line.textContent = t("quotaNeedKey");
  else if (q.kind === "badKey") line.textContent = t("quotaBadKey");
  else if (q.kind === "failed") line.textContent = t("quotaFailed");
  else line.textContent = t("quotaLoading");
  notice.hidden = !(q.kind === "free" && state.options);
  notice.textContent = notice.hidden ? "" : t("watermarkNotice", state.options.free_tier.max_side);
}

// ---------------------------------------------------------------- photos
const SLOTS = {
  photo: { input: "#photo", preview: "#photo-preview", box: "#photo-box" },
  product: { input: "#product-photo", preview: "#product-preview", box: "#product-box" },
};

function dropPhoto(slot) {
  const held = state.photos[slot];
  if (held) URL.revokeObjectURL(held.url);
  state.photos[slot] = null;
  const preview = $(SLOTS[slot].preview);
  preview.removeAttribute("src");
  preview.hidden = true;
  $(SLOTS[slot].box).classList.remove("has-photo");
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("unreadable"));
    img.src = url;
  });
}

// Checks a chosen file (type, size, then pixel size) before anything is uploaded; keeps only a valid one.
async function acceptPhoto(slot, file) {
  const token = ++state.photoTokens[slot];
  dropPhoto(slot);
  updateForm();
  if (!file || !state.options) return;
  const reject = (err) => {
    if (token !== state.photoTokens[slot]) return;
    $(SLOTS[slot].input).value = "";
    showError(err);
    setPageState("error");
    updateForm();
  };
  const lim = limits();
  if (!PHOTO_TYPES.includes(file.type)) return reject({ key: "errType" });
  if (file.size > lim.max_upload_bytes) return reject({ key: "errTooLarge", args: [megabytes(lim.max_upload_bytes)] });
  const url = URL.createObjectURL(file);
  let img;
  try {
    img = await loadImage(url);
  } catch {
    URL.revokeObjectURL(url);
    return reject({ key: "errImage" });
  }
  const w = img.naturalWidth, h = img.naturalHeight;
  let problem = null;
  if (Math.min(w, h) < lim.min_side) problem = { key: "errSmall", args: [lim.min_side] };
  else if (w * h > lim.max_pixels) problem = { key: "errPixels", args: [Math.floor(lim.max_pixels / 1e6)] };
  if (problem || token !== state.photoTokens[slot]) {
    URL.revokeObjectURL(url);
    return problem ? reject(problem) : undefined;
  }
  state.photos[slot] = { file, url, w, h };
  const preview = $(SLOTS[slot].preview);
  preview.src = url;
  preview.hidden = false;
  $(SLOTS[slot].box).classList.add("has-photo");
  if (state.error) clearError();
  if (document.body.dataset.state === "error") setPageState(state.result ? "done" : "idle");
  updateForm();
}

function wirePhoto(slot) {
  const input = $(SLOTS[slot].input);
  const drop = $(`${SLOTS[slot].box} .drop`);
  input.addEventListener("change", () => acceptPhoto(slot, input.files[0] || null));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    if (!file || state.busy) return;
    try { input.files = e.dataTransfer.files; } catch { /* older browsers: the file is kept in state only */ }
    acceptPhoto(slot, file);
  });
}

// ---------------------------------------------------------------- form state
function neededPhotos(m) {
  if (m === "txt2img") return [];
  return m === "advanced" ? ["photo", "product"] : ["photo"];
}

// Why the generate button cannot be pressed now, or "" when it can.
function blockReason() {
  if (!state.options) return t("reasonLoading");
  if (state.busy) return t("reasonRendering");
  const m = mode();
  const missing = neededPhotos(m).filter((s) => !state.photos[s]);
  if (missing.length === 2) return t("reasonPhotos");
  if (missing.length === 1) return t(missing[0] === "product" ? "reasonPhoto_product" : `reasonPhoto_${m}`);
  const total = neededPhotos(m).reduce((sum, slot) => sum + state.photos[slot].file.size, 0);
  if (total > limits().max_upload_bytes) return t("reasonTotalSize", megabytes(limits().max_upload_bytes));
  if (m === "txt2img" && !$("#prompt").value.trim()) return t("reasonPrompt");
  return "";
}

function updateForm() {
  const m = mode();
  $("#upload-section").hidden = m === "txt2img";
  $("#product-box").hidden = m !== "advanced";
  $(".uploads").classList.toggle("two", m === "advanced");
  $("#photo-title").textContent = t(`photoTitle_${m === "txt2img" ? "product" : m}`);
  for (const slot of Object.keys(SLOTS)) {
    $(`${SLOTS[slot].box} .drop-text`).textContent = t(state.photos[slot] ? "dropTextChange" : "dropText");
  }
  $("#prompt-help").textContent = t(m === "txt2img" ? "promptHelpTxt" : "promptHelp");
  const prompt = $("#prompt");
  prompt.required = m === "txt2img";
  $("#prompt-label").textContent = t(m === "txt2img" ? "promptRequired" : "promptOptional");
  const reason = blockReason();
  $("#generate").disabled = reason !== "";
  $("#generate-reason").textContent = reason;
  $("#again").disabled = state.busy || !state.last;
  $$("input[name=mode], input[name=format], #photo, #product-photo").forEach((el) => { el.disabled = state.busy; });
}

// The inputs of one render, read from the form (a snapshot, so "again" repeats exactly these).
function readInputs() {
  const seedText = $("#seed").value.trim();
  const seed = seedText === "" ? null : Number(seedText);
  return {
    mode: mode(),
    files: { photo: state.photos.photo && state.photos.photo.file, product: state.photos.product && state.photos.product.file },
    fields: {
      industry: $("#industry").value,
      lang: state.lang,
      format: format(),
      headline: $("#headline").value.trim(),
      subcopy: $("#subcopy").value.trim(),
      shop_name: $("#shop-name").value.trim(),
      prompt: $("#prompt").value.trim(),
    },
    seed: Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED ? seed : null,
    // a number field reads "" for text it cannot parse ("12a"): that is a bad seed too, not "no seed"
    badSeed: $("#seed").validity.badInput || (seedText !== "" && !(Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED)),
  };
}

function requestBody(inputs) {
  const fields = { ...inputs.fields };
  if (!fields.prompt) delete fields.prompt;          // optional: not sent empty
  if (inputs.seed != null) fields.seed = inputs.seed;
  if (inputs.mode === "txt2img") return fields;      // JSON
  const form = new FormData();
  form.append("image", inputs.files.photo);
  if (inputs.mode === "advanced") form.append("product_image", inputs.files.product);
  form.append("request", JSON.stringify(fields));
  return form;
}

function newJobId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- progress
// Polls /jobs/progress every POLL_MS while the render request is in flight; returns a stop function.
function followJob(jobId) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    try {
      const res = await fetch("/jobs/progress", {
        method: "POST", credentials: "same-origin",
        headers: { ...authHeaders(), "Content-Type": "application/json" },
        body: JSON.stringify({ task_id: jobId }),
      });
      // 404 until the service has created the job: keep waiting.
      if (res.ok && !stopped) {
        state.progress = await res.json();
        renderProgress();
      }
    } catch { /* a missed poll is harmless */ }
    if (!stopped) timer = setTimeout(tick, POLL_MS);
  };
  timer = setTimeout(tick, POLL_MS);
  return () => { stopped = true; clearTimeout(timer); };
}

function renderProgress() {
  const box = $("#progress-box");
  box.hidden = !state.busy;
  if (!state.busy) return;
  const bar = $("#progress");
  const text = $("#progress-text");
  const p = state.progress;
  if (p && p.total > 0 && p.state === "running") {
    bar.max = p.total;
    bar.value = Math.min(p.step, p.total);
    text.textContent = p.step >= p.total ? t("progFinishing") : t("progStep", p.step, p.total);
  } else {
    bar.removeAttribute("value");   // indeterminate until the job reports steps
    text.textContent = t(p && p.state === "queued" ? "progQueued" : p && p.state === "done" ? "progFinishing" : "progWaiting");
  }
}

// ---------------------------------------------------------------- render
async function generate(again) {
  if (state.busy || (!again && blockReason())) return;
  const inputs = again ? { ...state.last, seed: null } : readInputs();
  if (!inputs) return;
  if (inputs.badSeed) {
    showError({ key: "errField", args: [{ field: "seed" }] });
    setPageState("error");
    return;
  }
  clearError();
  state.busy = true;
  state.progress = null;
  setPageState("rendering");
  updateForm();
  renderProgress();

  const jobId = newJobId();
  const stop = followJob(jobId);
  let ok = false;
  try {
    const res = await post(ROUTES[inputs.mode], requestBody(inputs), { "X-Fitad-Job": jobId });
    const blob = await res.blob();
    let meta = {};
    try { meta = JSON.parse(res.headers.get("X-Fitad-Meta") || "{}"); } catch { /* no metadata: still show the ad */ }
    stop();
    showResult(blob, meta, inputs);
    ok = true;
  } catch (f) {
    stop();
    showError(f instanceof Failure ? describeFailure(f) : { key: "errUnknown", args: [""] });
  }
  state.busy = false;
  renderProgress();
  updateForm();
  if (ok) {
    state.last = { ...inputs, badSeed: false };
    updateForm();
    revealResult(again);
    await Promise.all([loadCopy(inputs.fields), refreshQuota()]);
    setPageState("done");
  } else {
    await refreshQuota();
    setPageState("error");
  }
}

function showResult(blob, meta, inputs) {
  const old = state.result && state.result.url;
  state.result = { url: URL.createObjectURL(blob), meta, headline: inputs.fields.headline, copy: null, copyFailed: false };
  const img = $("#result-image");
  img.src = state.result.url;   // only now that the blob is complete
  if (old) URL.revokeObjectURL(old);
  renderResult();
}

function revealResult(again) {
  const section = $("#result");
  const first = section.hidden;
  section.hidden = false;
  if (!again || first) {
    const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    $("#result-title").focus({ preventScroll: true });
    section.scrollIntoView({ behavior: smooth ? "smooth" : "auto", block: "start" });
  }
}

function renderResult() {
  const r = state.result;
  if (!r) return;
  const meta = r.meta || {};
  const seed = meta.seed != null ? meta.seed : "—";
  $("#result-image").alt = t("resultAlt", r.headline || t(`fmt_${(meta.format && meta.format.key) || format()}`));
  const link = $("#download");
  link.href = r.url;
  link.download = `fitad-ad-${meta.seed != null ? meta.seed : "image"}.png`;
  const lora = meta.lora ? `${meta.lora.name || "LoRA"}${meta.lora.version ? ` v${meta.lora.version}` : ""}` : t("noLora");
  $("#result-meta").textContent = t("metaLine", seed, lora);
  const wm = $("#result-watermark");
  wm.hidden = !meta.watermarked;
  wm.textContent = meta.watermarked ? t("resultWatermark", state.options.free_tier.max_side) : "";
  const caption = $("#caption");
  const tags = $("#hashtags");
  caption.classList.toggle("loading", !r.copy);
  tags.classList.toggle("loading", !r.copy);
  if (r.copy) {
    fillWithTags(caption, r.copy.caption || "");
    fillWithTags(tags, (r.copy.hashtags || []).join(" "));
  } else {
    caption.textContent = t(r.copyFailed ? "copyUnavailable" : "copyLoading");
    tags.textContent = "";
  }
  $("#copy-caption").disabled = !r.copy || !r.copy.caption;
  $("#copy-hashtags").disabled = !r.copy || !(r.copy.hashtags || []).length;
}

// Writes `text` into `el` with each #hashtag in a no-wrap span; textContent stays exactly `text`.
function fillWithTags(el, text) {
  el.textContent = "";
  for (const part of text.split(/(#[^\s#]+)/)) {
    if (!part) continue;
    if (part.startsWith("#")) {
      const span = document.createElement("span");
      span.className = "tag";
      span.textContent = part;
      el.append(span);
    } else {
      el.append(part);
    }
  }
}

// Caption and hashtags for the shop (written in the language the ad was made in).
async function loadCopy(fields) {
  const r = state.result;
  try {
    const { industry, lang, shop_name, headline } = fields;
    r.copy = await (await post("/copy", { industry, lang, shop_name, headline })).json();
  } catch {
    r.copyFailed = true;
  }
  if (state.result === r) renderResult();
}

// ---------------------------------------------------------------- clipboard
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch { /* fall through */ }
  }
  // Fallback: select a hidden textarea and use the old copy command.
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "vh";
  document.body.append(area);
  area.select();
  let ok = false;
  try { ok = document.execCommand("copy"); } catch { ok = false; }
  area.remove();
  return ok;
}

function wireCopy(buttonSel, sourceSel, statusSel) {
  let timer = null;
  $(buttonSel).addEventListener("click", async () => {
    const status = $(statusSel);
    const ok = await copyText($(sourceSel).textContent);
    status.textContent = t(ok ? "copied" : "copyFailed");
    clearTimeout(timer);
    timer = setTimeout(() => { status.textContent = ""; }, ok ? 2000 : 6000);
  });
}

// ---------------------------------------------------------------- start
function wire() {
  $("#lang-toggle").addEventListener("click", () => {
    state.lang = state.lang === "ko" ? "en" : "ko";
    writeStore("fitad.lang", state.lang);
    applyLanguage();
  });

  const keyInput = $("#api-key");
  keyInput.value = state.apiKey;
  let keyTimer = null;
  const keyStatus = (key) => {
    $("#key-status").textContent = t(key);
    clearTimeout(keyTimer);
    keyTimer = setTimeout(() => { $("#key-status").textContent = ""; }, 3000);
  };
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const typed = keyInput.value.trim();
    // A key holds only these characters (the service's Bearer token syntax); anything else, e.g. Hangul typed by
    // the input method or a curly quote, could not even be sent in a header.
    if (typed && (typed.length > 512 || !/^[A-Za-z0-9\-._~+/]+=*$/.test(typed))) {
      keyStatus("keyBadChars");
      return;
    }
    state.apiKey = typed;
    writeStore("fitad.apiKey", state.apiKey || null);
    keyStatus(state.apiKey ? "keySaved" : "keyCleared");
    if (state.error && state.error.key === "errUnauthorized") clearError();
    refreshQuota();
  });
  $("#clear-key").addEventListener("click", () => {
    keyInput.value = "";
    state.apiKey = "";
    writeStore("fitad.apiKey", null);
    keyStatus("keyCleared");
    refreshQuota();
  });

  $$("input[name=mode]").forEach((el) => el.addEventListener("change", updateForm));
  $("#prompt").addEventListener("input", updateForm);
  wirePhoto("photo");
  wirePhoto("product");
  $("#ad-form").addEventListener("submit", (e) => { e.preventDefault(); generate(false); });
  $("#again").addEventListener("click", () => generate(true));
  wireCopy("#copy-caption", "#caption", "#copy-caption-status");
  wireCopy("#copy-hashtags", "#hashtags", "#copy-hashtags-status");

  // A photo dropped next to a drop area must not make the browser leave the page to show it.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

async function start() {
  wire();
  applyLanguage();
  try {
    const res = await fetch("/web/options.json", { credentials: "same-origin" });
    if (!res.ok) throw new Error(String(res.status));
    state.options = await res.json();
  } catch {
    showError({ key: "errOptions" });
    setPageState("error");
    return;
  }
  const lim = limits();
  for (const id of ["#headline", "#subcopy", "#shop-name"]) $(id).maxLength = lim.max_text_chars;
  $("#prompt").maxLength = lim.max_prompt_chars;
  buildFormats();
  applyLanguage();
  setPageState("idle");
  refreshQuota();
}

document.addEventListener("DOMContentLoaded", start);
