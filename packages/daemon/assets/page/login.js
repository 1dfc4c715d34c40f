// The sign-in page: the one-time secret is in the URL's fragment (never sent to the server in the
// request line). It is removed from the address bar and the history at once, then exchanged for
// the session cookie; the browser then goes to the clean URL "/".
(() => {
  const secret = location.hash.slice(1);
  history.replaceState(null, "", location.pathname === "/login" ? "/login" : location.pathname);
  const msg = document.getElementById("msg");
  if (!secret) {
    msg.textContent = "You are not signed in.";
    return;
  }
  fetch("/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ secret }),
    credentials: "same-origin",
    cache: "no-store",
  })
    .then(async (r) => {
      if (r.ok) {
        location.replace("/");
        return;
      }
      const j = await r.json().catch(() => ({}));
      msg.textContent = j.error || `sign-in refused (${r.status})`;
      msg.className = "err";
    })
    .catch(() => {
      msg.textContent = "The daemon did not answer: is it running? (`loxmcp status`)";
      msg.className = "err";
    });
})();
