"""Templates and their rules (SPEC 5.1, 5.4 "edit the template / update sold packages", 6.1, 6.4
"update all memberships", 9.10 expiry rules, 16 intro offers and jurisdiction presets): Settings →
Packages & Memberships, its services, API and pages."""
