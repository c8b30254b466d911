// Small progressive enhancements for the analyst console; every control works without it.
(function () {
  "use strict";
  var sql = document.getElementById("sql");
  var form = document.getElementById("query-form");
  if (!sql || !form) { return; }

  // Column chips insert their name at the cursor.
  document.querySelectorAll("[data-insert]").forEach(function (chip) {
    chip.addEventListener("click", function () {
      var text = chip.getAttribute("data-insert");
      var start = sql.selectionStart, end = sql.selectionEnd;
      sql.value = sql.value.slice(0, start) + text + sql.value.slice(end);
      sql.focus();
      sql.selectionStart = sql.selectionEnd = start + text.length;
    });
  });

  // Example buttons replace the SQL.
  document.querySelectorAll("[data-example]").forEach(function (button) {
    button.addEventListener("click", function () {
      sql.value = button.getAttribute("data-example");
      sql.focus();
    });
  });

  // Show only the input for the chosen way of spending.
  function showMode() {
    var mode = form.querySelector("input[name=mode]:checked").value;
    form.querySelectorAll("[data-mode]").forEach(function (box) {
      box.hidden = box.getAttribute("data-mode") !== mode;
    });
  }
  form.querySelectorAll("input[name=mode]").forEach(function (r) { r.addEventListener("change", showMode); });
  showMode();

  // Changing dataset points the SQL's FROM at it; the help beside updates on the next preview.
  var dataset = document.getElementById("dataset");
  var previous = dataset.value;
  dataset.addEventListener("change", function () {
    sql.value = sql.value.replace(new RegExp("\\bFROM\\s+" + previous + "\\b", "i"), "FROM " + dataset.value);
    previous = dataset.value;
  });
})();
