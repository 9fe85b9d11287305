<script>
// Appended to a built Snakemake report by tests/test_workflow.py (test_the_report_renders_in_a_browser):
// in headless Chromium, open every category and every file in it, as a reader clicks, and record what
// shows: the file's description (its caption) and its view (an image's width, an HTML page's source).
window.addEventListener('load', () => {
  const out = {};
  const wait = (ms) => new Promise(r => setTimeout(r, ms));
  const byText = (sel, text) => Array.from(document.querySelectorAll(sel)).find(e => e.textContent.trim() === text);
  const open = async (cat) => {
    const results = byText('a', 'Results');
    if (results) { results.click(); await wait(200); }
    byText('li > a', cat).click();
    await wait(200);
  };
  (async () => { try {
    await wait(1500);
    const skip = ['Workflow', 'Statistics', 'About'];
    out.categories = Array.from(document.querySelectorAll('li > a')).map(a => a.textContent.trim()).filter(n => n && !skip.includes(n));
    out.files = {};
    for (const cat of out.categories) {
      await open(cat);
      const files = Array.from(document.querySelectorAll('tr > td:first-child')).map(td => td.textContent.trim());
      for (const file of files) {
        await open(cat);
        const row = Array.from(document.querySelectorAll('tr')).find(tr => tr.firstChild && tr.firstChild.textContent.trim() === file);
        row.querySelector('a[iconname="information-circle"]').click();
        await wait(200);
        const entry = {category: cat, info: document.body.innerText};
        document.querySelector('a[iconname="eye"]').click();
        await wait(500);
        const images = Array.from(document.querySelectorAll('img')).filter(i => (i.getAttribute('src') || '').startsWith('data:image'));
        entry.width = Math.max(0, ...images.map(i => i.naturalWidth));
        const frame = document.querySelector('iframe');
        entry.frame = frame ? (frame.getAttribute('src') || '') : '';
        out.files[file] = entry;
      }
    }
  } catch (e) { out.error = String(e) + ' ' + e.stack; }
  const pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
  })();
});
</script>
