(arg) => {
  const norm = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const text = (n) => norm(n.innerText !== undefined ? n.innerText : n.textContent);
  const tiny = (el) => {
    const r = el.getBoundingClientRect();
    return r.width <= 1 || r.height <= 1;
  };
  const parts = (e, skip) => {
    // text a person sees (skip = visually hidden parts) or a screen reader reads (aria-hidden)
    const out = [];
    const walk = (n) => {
      for (const c of n.childNodes) {
        if (c.nodeType === 3) out.push(c.nodeValue);
        else if (c.nodeType === 1 && !skip(c) && getComputedStyle(c).display !== 'none') walk(c);
      }
    };
    walk(e);
    return norm(out.join(' '));
  };
  const seenText = (e) => parts(e, (c) => tiny(c) && c.childElementCount === 0);
  const readText = (e) => parts(e, (c) => c.getAttribute('aria-hidden') === 'true');
  const pathOf = (e) => {
    const parts = [];
    let n = e;
    while (n && n.nodeType === 1) {
      const p = n.parentElement;
      const tag = n.tagName.toLowerCase();
      if (!p) {
        const root = n.getRootNode();
        parts.unshift(tag);
        if (root && root.host) { parts.unshift('>>>'); n = root.host; continue; }
        break;
      }
      parts.unshift(`${tag}:nth-child(${Array.prototype.indexOf.call(p.children, n) + 1})`);
      n = p;
    }
    return parts.join(' > ');
  };
  const shown = (e) => {
    if (!e || !e.isConnected) return false;
    if (e.checkVisibility && !e.checkVisibility({opacityProperty: true,
        visibilityProperty: true, contentVisibilityAuto: true})) return false;
    const r = e.getBoundingClientRect();
    return r.width >= 2 && r.height >= 2;
  };
  const hiddenFromAT = (e) => {
    for (let n = e; n && n.nodeType === 1; n = n.parentElement) {
      if (n.getAttribute('aria-hidden') === 'true' || n.hasAttribute('inert')) return true;
    }
    return false;
  };
  // ---- modal scope: an open modal dialog; only its content is a candidate
  const dialogs = Array.from(document.querySelectorAll(
    'dialog[open],[role=dialog],[role=alertdialog]')).filter((d) => shown(d) && !hiddenFromAT(d));
  let modal = null;
  for (const d of dialogs) {
    const isModal = (d.tagName === 'DIALOG' && d.matches(':modal')) ||
      d.getAttribute('aria-modal') === 'true';
    if (isModal) modal = d;  // the last one opened sits on top
  }
  if (!modal && dialogs.length) {
    // no aria-modal, but the rest of the app is hidden or inert, or a backdrop covers it
    const cx = innerWidth / 2, cy = innerHeight / 2;
    const atCentre = document.elementFromPoint(cx, cy);
    for (const d of dialogs) {
      const others = Array.from(document.body.children).filter((c) => !c.contains(d));
      const appHidden = others.length && others.some((c) => shown(c)) && others.filter(shown)
        .every((c) => c.getAttribute('aria-hidden') === 'true' || c.hasAttribute('inert'));
      if (appHidden || (atCentre && d.contains(atCentre))) modal = d;
    }
    if (!modal && atCentre) {
      const s = getComputedStyle(atCentre), r = atCentre.getBoundingClientRect();
      if (s.position === 'fixed' && r.width >= innerWidth * 0.9 && r.height >= innerHeight * 0.9
          && dialogs.length === 1) modal = dialogs[0];
    }
  }
  const scope = modal || document.body;
  const modalName = modal ? norm(modal.getAttribute('aria-label')) || (() => {
    const ids = (modal.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean);
    return ids.map((i) => document.getElementById(i)).filter(Boolean).map(text).join(' ');
  })() || 'dialog' : null;

  const tagRole = (e) => {
    const role = e.getAttribute('role');
    if (role) return role.split(' ')[0];
    const tag = e.tagName.toLowerCase(), type = (e.getAttribute('type') || 'text').toLowerCase();
    if (tag === 'a' && e.hasAttribute('href')) return 'link';
    if (tag === 'button' || (tag === 'input' && ['submit', 'button', 'reset', 'image'].includes(type))) return 'button';
    if (tag === 'input' && type === 'checkbox') return 'checkbox';
    if (tag === 'input' && type === 'radio') return 'radio';
    if (tag === 'input' && type === 'search') return 'searchbox';
    if (tag === 'input' && type === 'number') return 'spinbutton';
    if (tag === 'input' && type === 'range') return 'slider';
    if (tag === 'input' && type === 'file') return 'button';
    if (tag === 'input' || tag === 'textarea') return 'textbox';
    if (tag === 'select') return (e.multiple || e.size > 1) ? 'listbox' : 'combobox';
    if (tag === 'summary') return 'button';
    if (tag === 'option') return 'option';
    if (tag === 'tr') return 'row';
    if (tag === 'td') return 'cell';
    if (tag === 'th') return 'columnheader';
    if (tag === 'li') return 'listitem';
    if (tag === 'article') return 'article';
    if (/^h[1-6]$/.test(tag)) return 'heading';
    if (e.isContentEditable && e.getAttribute('contenteditable') !== null) return 'textbox';
    return '';
  };
  const byIds = (ids) => (ids || '').split(/\s+/).filter(Boolean)
    .map((i) => document.getElementById(i)).filter(Boolean).map(text).join(' ');
  const ownText = (e) => {
    // visible text plus alt text of images / aria-labels of icons inside
    let t = text(e);
    if (!t) {
      const img = e.querySelector('img[alt],svg[aria-label],[role=img][aria-label]');
      if (img) t = norm(img.getAttribute('alt') || img.getAttribute('aria-label'));
    }
    return t;
  };
  const LABELISH = 'label,legend,[class*=label],[class*=Label],[id*=label]';
  const looseLabel = (e) => {
    // a label without for=: the label-ish text just before the control in its container
    for (let n = e, depth = 0; n && depth < 3; n = n.parentElement, depth++) {
      let s = n.previousElementSibling;
      for (let k = 0; s && k < 2; s = s.previousElementSibling, k++) {
        if (s.matches('input,select,textarea,button')) break;
        const t = text(s);
        if (t && t.length <= 80 && (s.matches(LABELISH) || s.querySelector(LABELISH) ||
            /^(span|div|p|strong|b|dt)$/i.test(s.tagName))) return t;
        if (t) break;
      }
      if (n.parentElement && n.parentElement.querySelectorAll('input,select,textarea,[role=combobox],[role=textbox]').length > 1) break;
    }
    return '';
  };
  const ROWS = 'tr,[role=row],li,[role=listitem],article,[role=article],[role=option],[role=treeitem]';
  const itemOf = (e) => {
    const r = e.closest(ROWS);
    if (r && r !== e) return r;
    // a repeated block: its parent holds siblings built the same way (search results, cards)
    for (let n = e.parentElement, depth = 0; n && n !== document.body && depth < 8; n = n.parentElement, depth++) {
      const p = n.parentElement;
      if (!p || !n.className || typeof n.className !== 'string') continue;
      const same = Array.from(p.children).filter((c) => c.tagName === n.tagName && c.className === n.className);
      if (same.length >= 2) return n;
    }
    return null;
  };
  const regionName = (n) => {
    const own = norm(n.getAttribute('aria-label')) || byIds(n.getAttribute('aria-labelledby'));
    if (own) return own;
    const lg = n.querySelector(':scope > legend');
    if (lg) return text(lg);
    const h = n.querySelector(':scope > h1,:scope > h2,:scope > h3,:scope > h4,:scope > h5,:scope > h6,:scope > [role=heading],:scope > header,:scope > * > h1,:scope > * > h2,:scope > * > h3,:scope > * > h4,:scope > * > [role=heading]');
    return h ? text(h).slice(0, 80) : '';
  };
  const regionsOf = (e) => {
    const out = [];
    for (let n = e.parentElement, depth = 0; n && n !== document.body && depth < 10; n = n.parentElement, depth++) {
      const role = n.getAttribute('role') || '';
      if (/^(section|aside|nav|form|fieldset|dialog|header|footer|main)$/i.test(n.tagName) ||
          /^(region|dialog|alertdialog|group|navigation|toolbar|tabpanel|complementary|form|search|menu|listbox|grid|table|banner|main)$/.test(role) ||
          (n.tagName === 'DIV' && n.children.length <= 12)) {
        const name = regionName(n);
        if (name && !out.includes(name)) out.push(name);
      }
    }
    return out.slice(0, 6);
  };
  const colHeader = (e) => {
    const cell = e.closest('td,th,[role=gridcell],[role=cell]');
    if (!cell) return '';
    const idx = cell.getAttribute('aria-colindex');
    const table = cell.closest('table,[role=grid],[role=table],[role=treegrid]');
    if (!table) return '';
    let hdr = null;
    if (idx) hdr = table.querySelector(`[role=columnheader][aria-colindex="${idx}"],th[aria-colindex="${idx}"]`);
    if (!hdr) {
      const row = cell.parentElement;
      const i = Array.prototype.indexOf.call(row.children, cell);
      const hrow = table.querySelector('thead tr,[role=row]:has(> [role=columnheader]),tr:has(> th)');
      if (hrow && hrow !== row) hdr = hrow.children[i] || null;
    }
    return hdr ? text(hdr) : '';
  };
  const visuallyHidden = (e) => {
    const s = getComputedStyle(e), r = e.getBoundingClientRect();
    return s.opacity === '0' || r.width < 2 || r.height < 2 || s.clipPath === 'inset(50%)' ||
      (s.clip && s.clip !== 'auto' && s.position === 'absolute') || !shown(e);
  };
  const proxyOf = (e) => {
    // what a person clicks for a visually hidden checkbox/radio: its label or the custom control
    const cands = [];
    if (e.labels) cands.push(...Array.from(e.labels));
    const wrap = e.closest('label');
    if (wrap) cands.push(wrap);
    if (e.id) cands.push(...Array.from(document.querySelectorAll(`[for="${CSS.escape(e.id)}"]`)));
    const sib = e.nextElementSibling;
    if (sib && !sib.matches('input,select,textarea,button,a')) cands.push(sib);
    return cands.find((c) => shown(c)) || null;
  };
  const hit = (e, target) => {
    // the top-most element at the centre of `target` must be e, inside e, or e's label
    const t = target || e;
    const r = t.getBoundingClientRect();
    const x = r.left + r.width / 2, y = r.top + r.height / 2;
    if (x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) return {state: 'offscreen', x, y};
    let top = document.elementFromPoint(x, y);
    while (top && top.shadowRoot) {
      const inner = top.shadowRoot.elementFromPoint(x, y);
      if (!inner || inner === top) break;
      top = inner;
    }
    if (!top) return {state: 'covered', x, y, by: ''};
    const lab = top.closest('label');
    if (top === e || e.contains(top) || t.contains(top) || (lab && (lab.control === e || lab === t)))
      return {state: 'ok', x, y};
    const by = top.getAttribute('aria-label') || top.tagName.toLowerCase() +
      (top.id ? '#' + top.id : '') + (typeof top.className === 'string' && top.className ? '.' + top.className.split(/\s+/)[0] : '');
    return {state: 'covered', x, y, by};
  };
  const customOptions = (e) => {
    // an ARIA combobox/listbox: the options of the listbox it controls, rendered or not yet
    const ids = [e.getAttribute('aria-controls'), e.getAttribute('aria-owns')].join(' ');
    const boxes = ids.split(/\s+/).filter(Boolean).map((i) => document.getElementById(i)).filter(Boolean);
    if (e.getAttribute('role') === 'listbox') boxes.push(e);
    const opts = [];
    for (const b of boxes) for (const o of b.querySelectorAll('[role=option]'))
      opts.push([norm(o.getAttribute('aria-label') || o.textContent), o.getAttribute('data-value') || '']);
    return opts;
  };
  const describe = (e) => {
    const tag = e.tagName.toLowerCase();
    const type = (e.getAttribute('type') || '').toLowerCase();
    const role = tagRole(e);
    const names = [];
    const push = (t, src) => { t = norm(t); if (t && !names.some(([a, b]) => a === t && b === src)) names.push([t.slice(0, 200), src]); };
    const lby = byIds(e.getAttribute('aria-labelledby'));
    const labels = e.labels ? Array.from(e.labels).map(text).filter(Boolean) : [];
    const isField = ['input', 'textarea', 'select'].includes(tag);
    const btnValue = tag === 'input' && ['submit', 'button', 'reset'].includes(type) ? norm(e.value) : '';
    const own = isField ? '' : (e.querySelector('[aria-hidden=true]') ? readText(e) : ownText(e));
    const seen = isField ? '' : seenText(e);
    const accname = norm(e.getAttribute('aria-label')) || lby || labels.join(' ') || btnValue ||
      (['row', 'listitem', 'article', 'option', 'treeitem', 'cell', 'gridcell', 'link', 'button', 'tab', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'heading', 'switch', 'checkbox', 'radio', 'columnheader', ''].includes(role) ? own : '') ||
      norm(e.getAttribute('title')) || norm(e.getAttribute('placeholder')) || norm(e.getAttribute('alt'));
    push(accname, 'name');
    if (own && own.length <= 120) push(own, 'text');
    if (seen && seen !== own && seen.length <= 120) push(seen, 'text');
    for (const l of labels) push(l, 'label');
    if (lby) push(lby, 'label');
    const lbyIds = (e.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean);
    if (lbyIds.length > 1) for (const id of lbyIds) push(byIds(id), 'label');
    if (e.getAttribute('alt')) push(e.getAttribute('alt'), 'title');
    if (isField || ['combobox', 'textbox', 'searchbox', 'listbox', 'switch', 'checkbox', 'radio'].includes(role)) {
      if (!labels.length && !lby && !e.getAttribute('aria-label')) push(looseLabel(e), 'label');
    }
    push(e.getAttribute('placeholder'), 'placeholder');
    push(e.getAttribute('title'), 'title');
    push(e.getAttribute('data-tooltip') || e.getAttribute('data-tip') || e.getAttribute('data-original-title'), 'tooltip');
    const desc = byIds(e.getAttribute('aria-describedby'));
    if (desc && desc.length <= 60) push(desc, 'tooltip');
    const ch = colHeader(e);
    if (ch && ['cell', 'gridcell', 'columnheader', ''].includes(role)) push(ch, 'column');
    const checkable = (tag === 'input' && ['checkbox', 'radio'].includes(type)) ||
      ['checkbox', 'switch', 'radio', 'menuitemcheckbox', 'menuitemradio'].includes(role);
    const isSelect = tag === 'select' || role === 'listbox' ||
      (role === 'combobox' && tag !== 'input' && tag !== 'textarea');
    const fillable = !checkable && !isSelect && (tag === 'textarea' ||
      (tag === 'input' && !['submit', 'button', 'reset', 'file', 'image', 'hidden', 'range', 'color'].includes(type)) ||
      e.isContentEditable || ['textbox', 'searchbox', 'spinbutton', 'combobox'].includes(role));
    const disabled = e.matches(':disabled') || !!e.closest('[aria-disabled=true]') ||
      (fillable && e.readOnly === true) || !!e.closest('fieldset:disabled');
    let vis = shown(e), proxy = null;
    if (checkable && visuallyHidden(e)) {
      proxy = proxyOf(e);
      vis = !!proxy;
    }
    const h = vis ? hit(e, proxy) : {state: 'hidden'};
    const style = getComputedStyle(e);
    const interactive = !!role && !['listitem', 'article', 'heading', 'cell', 'columnheader', 'row'].includes(role) ||
      e.hasAttribute('onclick') || e.tabIndex >= 0 || style.cursor === 'pointer' || tag === 'label' ||
      e.hasAttribute('jsaction') || e.hasAttribute('data-action');
    const item = itemOf(e);
    const checked = tag === 'input' ? e.checked : e.getAttribute('aria-checked') === 'true' ||
      e.getAttribute('aria-pressed') === 'true';
    const extra = [e.getAttribute('aria-label'), typeof e.className === 'string' ? e.className.replace(/[-_]/g, ' ') : '',
      Array.from(e.attributes).filter((a) => a.name.startsWith('data-') || a.name === 'aria-selected').map((a) => a.name.replace(/^data-/, '') + ' ' + a.value).join(' ')].join(' ');
    return {
      path: pathOf(e), tag, type, role, name: accname.slice(0, 200), names,
      visible: vis, enabled: !disabled, interactive,
      kind: checkable ? 'checkable' : isSelect ? 'select' : fillable ? 'fillable' : 'other',
      testid: e.getAttribute('data-testid'), id: e.id || null,
      cssId: e.id ? '#' + CSS.escape(e.id) : null,
      options: tag === 'select' ? Array.from(e.options).map((o) => [norm(o.label || o.text), o.value])
        : isSelect ? customOptions(e) : [],
      hit: h.state, coveredBy: h.by || '', checked, proxy: !!proxy,
      row: item ? text(item).slice(0, 400) + ' ' + norm(item.getAttribute('aria-label')) : '',
      rowPath: item ? pathOf(item) : '',
      rowExtra: item ? (typeof item.className === 'string' ? item.className.replace(/[-_]/g, ' ') : '') + ' ' + norm(item.getAttribute('aria-label')) : '',
      selfText: text(e).slice(0, 400) + ' ' + extra,
      regions: regionsOf(e),
      hasHeading: !!e.querySelector('h1,h2,h3,h4,h5,h6,[role=heading]'),
      inNav: !!e.closest('nav,[role=navigation],[role=tree],[role=menu],[role=menubar],' +
        '[role=tablist],header,[role=banner],aside,[role=complementary]'),
      isItem: e.matches(ROWS) || (!!item && false),
    };
  };
  if (arg && arg.mode === 'info') return arg.els.map(describe);
  if (arg && arg.mode === 'hit') {
    const e = arg.el;
    const type = (e.getAttribute('type') || '').toLowerCase();
    let target = e, via = 'self';
    if (e.tagName === 'INPUT' && ['checkbox', 'radio'].includes(type) && visuallyHidden(e)) {
      const p = proxyOf(e);
      if (p) { target = p; via = 'label'; }
    }
    if (target.scrollIntoViewIfNeeded) target.scrollIntoViewIfNeeded(true);
    else target.scrollIntoView({block: 'center'});
    return {...hit(e, target === e ? null : target), via};
  }
  const SEL = 'a[href],button,input:not([type=hidden]),select,textarea,summary,label,[role],' +
    '[contenteditable=""],[contenteditable=true],[onclick],[tabindex],[jsaction],td,th,tr,li,article,' +
    '[data-tooltip],[title],[aria-label],h1,h2,h3,h4,h5,h6';
  const SKIP = new Set(['presentation', 'none', 'group', 'region', 'dialog', 'alertdialog', 'main',
    'navigation', 'banner', 'contentinfo', 'complementary', 'toolbar', 'tablist', 'menu', 'menubar',
    'list', 'grid', 'table', 'rowgroup', 'tree', 'treegrid', 'form', 'search', 'img', 'tooltip',
    'status', 'alert', 'log', 'document', 'application', 'separator', 'radiogroup', 'tabpanel',
    'generic', 'note', 'feed', 'figure', 'paragraph']);
  const out = [];
  const seen = new Set();
  const walk = (root) => {
    for (const e of root.querySelectorAll(SEL)) {
      if (seen.has(e)) continue;
      seen.add(e);
      const role = e.getAttribute('role');
      if (role && SKIP.has(role.split(' ')[0]) && !(e.hasAttribute('onclick') || e.getAttribute('tabindex') === '0')) continue;
      if (hiddenFromAT(e)) continue;
      if (e.tagName === 'LABEL' && (e.control || !e.hasAttribute('onclick'))) continue;  // the control speaks for it
      const d = describe(e);
      d.order = out.length;
      out.push(d);
    }
    for (const host of root.querySelectorAll('*')) if (host.shadowRoot) walk(host.shadowRoot);
  };
  walk(scope);
  return {modal: modalName, elements: out};
}
