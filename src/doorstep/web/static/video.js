// Doorstep video pages (web/video.py): live view and the drop-zone editor.
// Hand-written, no dependencies, loaded from this origin only (the pages' CSP).
"use strict";

(function () {
  // Live view: ask the service for a fresh signed URL (valid 60 s to open) and let the
  // <img> play the MJPEG stream it names. The URL is never shown or stored.
  function liveView() {
    var button = document.getElementById("watch-live");
    var image = document.getElementById("live-view");
    var status = document.getElementById("live-status");
    if (!button || !image) return;
    function say(text) {
      if (status) status.textContent = text;
    }
    button.addEventListener("click", function () {
      button.disabled = true;
      say("Connecting…");
      fetch(button.getAttribute("data-live-src"), {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          if (!response.ok) throw new Error("live view answered " + response.status);
          return response.json();
        })
        .then(function (answer) {
          image.hidden = false;
          image.src = answer.url;
          say("Live");
        })
        .catch(function () {
          say("Live view is not available: the entry may have ended.");
        })
        .then(function () {
          button.disabled = false;
        });
    });
    image.addEventListener("error", function () {
      say("Live view ended.");
    });
  }

  // Drop zone: tap the corners on the still; the polygon is kept in normalized
  // coordinates ("x,y;x,y;...") in the form's hidden field.
  function zoneEditor() {
    var canvas = document.getElementById("zone-canvas");
    var still = document.getElementById("zone-still");
    var field = document.getElementById("drop_zone");
    var clear = document.getElementById("zone-clear");
    var count = document.getElementById("zone-count");
    if (!canvas || !still || !field) return;
    var points = parse(field.value);

    function parse(text) {
      if (!text) return [];
      return text.split(";").map(function (pair) {
        var xy = pair.split(",");
        return [parseFloat(xy[0]), parseFloat(xy[1])];
      });
    }
    function store() {
      field.value = points
        .map(function (p) {
          return p[0].toFixed(4) + "," + p[1].toFixed(4);
        })
        .join(";");
      if (count) count.textContent = points.length ? points.length + " corners" : "";
    }
    function draw() {
      var box = canvas.getBoundingClientRect();
      canvas.width = Math.round(box.width);
      canvas.height = Math.round(box.height);
      var context = canvas.getContext("2d");
      context.clearRect(0, 0, canvas.width, canvas.height);
      if (!points.length) return;
      context.beginPath();
      points.forEach(function (p, index) {
        var x = p[0] * canvas.width;
        var y = p[1] * canvas.height;
        if (index === 0) context.moveTo(x, y);
        else context.lineTo(x, y);
      });
      context.closePath();
      context.fillStyle = "rgba(0, 140, 70, 0.25)";
      context.strokeStyle = "rgb(0, 140, 70)";
      context.lineWidth = 2;
      context.fill();
      context.stroke();
    }
    canvas.addEventListener("pointerdown", function (event) {
      var box = canvas.getBoundingClientRect();
      var x = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      var y = Math.min(1, Math.max(0, (event.clientY - box.top) / box.height));
      points.push([x, y]);
      store();
      draw();
    });
    if (clear) {
      clear.addEventListener("click", function () {
        points = [];
        store();
        draw();
      });
    }
    if (still.complete) draw();
    else still.addEventListener("load", draw);
    window.addEventListener("resize", draw);
    store();
  }

  document.addEventListener("DOMContentLoaded", function () {
    liveView();
    zoneEditor();
  });
})();
