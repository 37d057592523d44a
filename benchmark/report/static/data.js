"use strict";
// Shared by the gallery and the feature pages. Data files are scripts that call fbData(name, value):
// a page opened from disk (file://) may load scripts, while fetch() of file:// is blocked.
window.FB_DATA = {};

function fbData(name, value) {
  window.FB_DATA[name] = value;
}

// Loads data/<name>.js once and resolves with its value.
function fbLoad(name) {
  if (name in window.FB_DATA) return Promise.resolve(window.FB_DATA[name]);
  return new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = "data/" + name + ".js";
    script.onload = () => resolve(window.FB_DATA[name]);
    script.onerror = () => reject(new Error("cannot load data/" + name + ".js"));
    document.head.appendChild(script);
  });
}

// A DOM element with attributes and children; strings become text nodes, so data is never parsed as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function fmt(value) {
  return value === null || value === undefined ? "–" : value.toFixed(3);
}

// An explanation as shown: an empty answer is marked as such rather than left blank.
function explanationText(text) {
  return text === "" ? el("span", {class: "note"}, "(empty)") : text;
}

function imagePath(source, feature, kind) {
  return "img/" + encodeURIComponent(source) + "/" + feature + "-" + kind + ".png";
}
