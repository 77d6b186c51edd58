// Live updates: the server says when anything watched changed; the page fetches itself
// again as a fragment and swaps it in. No other script, no other origin.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.stream || !window.EventSource) {
    return;
  }
  var busy = false;
  var again = false;
  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.href, {
      headers: { "X-Arges-Fragment": "1" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null) {
          live.innerHTML = html;
          live.dataset.refreshed = String(Date.now());
        }
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }
  var stream = new EventSource(live.dataset.stream);
  stream.addEventListener("change", refresh);
  stream.addEventListener("hello", function () {
    document.body.dataset.stream = "open";
  });
  stream.onerror = function () {
    document.body.dataset.stream = "retrying";
  };
})();
