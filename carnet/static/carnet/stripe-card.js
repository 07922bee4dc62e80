// Card entry by Stripe.js (SAQ A): the card number, expiry and CVC are typed into Stripe's own
// field and sent to Stripe only. On submit the SetupIntent the page was given is confirmed with the
// card (the bank's 3-D Secure check happens here if it asks), then only the SetupIntent's id is
// posted to Carnet, in the hidden `setup_intent` field.
(function () {
  "use strict";
  var form = document.querySelector("form[data-stripe-card]");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.dataset.stripeKey);
  var card = stripe.elements().create("card");
  card.mount(form.querySelector("[data-stripe-mount]"));
  var error = form.querySelector("[data-stripe-error]");
  var sending = false;
  form.addEventListener("submit", function (event) {
    // Looked up here: this script runs inside the form, before its button is parsed.
    var button = form.querySelector("button[type=submit]");
    var intent = form.querySelector("input[name=setup_intent]");
    if (intent.value) { return; }  // confirmed: the real submit
    // A form that takes a new card only for one choice (the checkout's "New card"): else a plain submit.
    var when = (form.dataset.stripeWhen || "").split("=");
    if (when.length === 2 && form.elements[when[0]] && form.elements[when[0]].value !== when[1]) { return; }
    event.preventDefault();
    if (sending) { return; }
    sending = true;
    button.disabled = true;
    error.textContent = "";
    var holder = form.querySelector("input[name=holder]");
    stripe.confirmCardSetup(form.dataset.clientSecret, {
      payment_method: {card: card, billing_details: {name: holder ? holder.value : ""}}
    }).then(function (result) {
      if (result.error) {
        error.textContent = (result.error.message || "The card was not accepted.") + " Check it and try again.";
        sending = false;
        button.disabled = false;
        return;
      }
      intent.value = result.setupIntent.id;
      form.submit();
    });
  });
})();

// 3-D Secure on a charge (the page Carnet shows when the bank wants the card holder to confirm): the
// bank's window opens through Stripe.js, then the same form is posted again. Carnet does not take the
// browser's word for the outcome: it reads the PaymentIntent from Stripe by the id it stored.
(function () {
  "use strict";
  var form = document.querySelector("form[data-stripe-authenticate]");
  if (!form || typeof Stripe === "undefined") { return; }
  var stripe = Stripe(form.dataset.stripeKey);
  var secret = form.dataset.clientSecret;
  var error = form.querySelector("[data-stripe-error]");
  var running = false;
  function authenticate() {
    var button = form.querySelector("button[type=submit]");
    if (running) { return; }
    running = true;
    button.disabled = true;
    error.textContent = "";
    var step = stripe.handleNextAction ? stripe.handleNextAction({clientSecret: secret})
                                       : stripe.confirmCardPayment(secret);
    step.then(function () { form.submit(); }, function () {
      error.textContent = "The bank's window could not be opened. Try again.";
      running = false;
      button.disabled = false;
    });
  }
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    authenticate();
  });
  authenticate();
})();
