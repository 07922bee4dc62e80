// Starts the vendored Swagger UI on /api/v1/docs from the JSON settings block (no inline script).
(function () {
  const config = JSON.parse(document.getElementById("swagger-settings").textContent);
  const csrf = document.body.dataset.csrfToken;
  config.dom_id = "#swagger-ui";
  config.presets = [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset];
  if (csrf) {
    // "Try it out" with the session cookie needs the CSRF token, like every other POST.
    config.requestInterceptor = (req) => { req.headers["X-CSRFToken"] = csrf; return req; };
  }
  SwaggerUIBundle(config);
})();
