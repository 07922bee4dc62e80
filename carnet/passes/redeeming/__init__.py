"""Using a pass, the core packages and memberships share (SPEC 5.3, 6.3, 9.9 Explain, 16 windows
and caps): eligibility, two-phase redemption (attach, arrive, remove), the breakage in proportion
to redemptions (issue 23), what scheduling asks at each step of a visit, online-booking quotes, and
its API."""
