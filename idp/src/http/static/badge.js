// The emta trust badge, drawn by the IdP's own code with what the IdP says now. A copy
// of this script on another site names that site as not the manufacturer's storefront,
// and the page it links to, on the IdP's domain, says where the badge is valid.
(function () {
  "use strict";
  var b = __EMTA_BADGE__;
  var s = document.currentScript;
  if (!s || !s.parentNode) {
    return;
  }
  // Under one of the manufacturer's registered storefronts (a passive copy elsewhere
  // says so; a forger who rewrites this page's script environment is answered by the
  // page the badge links to, on the IdP's domain).
  var here = String(window.location.href).split("#")[0].split("?")[0];
  var ours = false;
  for (var i = 0; i < b.storefronts.length; i++) {
    if (here.slice(0, b.storefronts[i].length) === b.storefronts[i]) {
      ours = true;
    }
  }
  var state = ours ? b.status : "wrong-origin";
  var n = Math.max(0, Math.min(5, b.stars));
  var stars = "★★★★★".slice(0, n) + "☆☆☆☆☆".slice(0, 5 - n);
  var text;
  if (!ours) {
    text = "امتا: این سایت فروشگاه ثبت‌شده " + b.name_fa + " نیست / emta: this site is not " + b.name + "'s registered storefront";
  } else if (b.status === "active") {
    text = "نشان اعتماد امتا: " + b.name_fa + " " + stars + " / emta trust badge: " + b.name;
  } else if (b.status === "suspended") {
    text = "امتا: " + b.name_fa + " تعلیق شده است / emta: " + b.name + " is SUSPENDED";
  } else {
    text = "امتا: اعتبار " + b.name_fa + " به پایان رسیده است / emta: " + b.name + "'s trust record has EXPIRED";
  }
  var a = document.createElement("a");
  a.href = b.page;
  a.className = "emta-badge";
  a.setAttribute("data-emta-badge", b.id);
  a.setAttribute("data-status", state);
  a.setAttribute("data-stars", String(n));
  // The badge's page learns which site it was clicked on, whatever that site's policy.
  a.setAttribute("referrerpolicy", "origin");
  a.setAttribute("rel", "noopener");
  a.textContent = text;
  s.parentNode.insertBefore(a, s);
})();
