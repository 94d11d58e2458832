"""Style sheets of the app's behavior meter and its phone layout (plain CSS strings, added to app.py's css).

The phone layout (screens up to 700 px wide, e.g. a 390 px phone): the three answers stay comparable on one
screen and the message box stays within reach after an answer:

* the panes are compact: each one at most a third of the screen's height minus the message box (the
  chat scrolls inside to its latest answer), and the user's message is shown in the first pane only;
* the row with the message box and Send, and the Stop / Retry / Clear row, come right after the panes
  (CSS order; the other controls follow in their own order), and the message row sticks to the bottom of
  the screen while the panes are in view: after an answer it sits right under the latest answers, never a
  thousand pixels below them.
"""

METER_CSS = """
#meter .meter-legend { font-size: var(--text-sm); color: var(--body-text-color); margin-bottom: 6px; }
#meter .meter-panes { display: flex; flex-wrap: wrap; gap: 12px; }
#meter .meter-pane { flex: 1 1 260px; min-width: 0; border: 1px solid var(--border-color-primary);
  border-radius: 8px; padding: 6px 8px; }
#meter .meter-title { font-weight: 600; font-size: var(--text-sm); }
#meter .meter-line { display: block; margin: 2px 0 4px; }
#meter .meter-text { white-space: pre-wrap; line-height: 1.7; font-size: var(--text-md); }
#meter .meter-token { border-radius: 3px; }
#meter .meter-empty { color: var(--body-text-color); font-size: var(--text-sm); }
"""

PHONE_CSS = """
/* top level (Gradio scopes rules inside @media to descendants of the container): clip draws as hidden did,
   but does not make the container a scroller, so the phone's message row can stick to the screen */
.gradio-container { overflow: clip !important; }
@media (max-width: 700px) {
  #panes { gap: 6px !important; }
  #panes [id^="pane-"] { min-height: 96px !important;
    max-height: max(120px, calc((100svh - 240px) / 3)) !important; height: auto !important; }
  #pane-unsteered .message-row:has([data-testid="user"]),
  #pane-subtracted .message-row:has([data-testid="user"]) { display: none; }
  #panes label[data-testid="block-label"] { font-size: var(--text-sm); padding: 2px 6px; }
  #prompted [id^="pane-prompted"] { max-height: 200px !important; }
  /* the message row and Stop / Retry / Clear come right after the panes (the rest keeps its order) */
  div:has(> #panes) > #panes ~ * { order: 2; }
  div:has(> #panes) > div:has(#prompt), div:has(> #panes) > div:has(#stop) { order: 1; }
  div:has(> #panes) > div:has(#prompt) {
    position: sticky; bottom: 0; z-index: 20; background: var(--background-fill-primary);
    padding: 6px 0; box-shadow: 0 -4px 8px rgba(0, 0, 0, 0.08); }
  #meter .meter-pane { flex-basis: 100%; }
}
"""

# The three panes side by side (wrapping on a narrow screen), one Clear for all of them, sticky titles.
CSS = """
#panes { flex-wrap: wrap; }
#panes > .column { min-width: 300px; }
#panes button[aria-label="Clear"] { display: none; }  /* one Clear for all three panes */
#panes label[data-testid="block-label"] { position: sticky; top: 0; z-index: 5; font-size: var(--text-md); }
@media (max-width: 700px) {
  #panes > .column { flex: 1 1 100% !important; }
  #panes [id^="pane-"] { min-height: 120px !important; }  /* the message box stays in view on a phone */
}
"""
