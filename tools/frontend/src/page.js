/* The companion's page front end: draws the widgets of a page Voila has sent.

   Voila sends a page's text as HTML and each widget cell's output as
   <script type="application/vnd.voila.cell-output+json">. This script connects to the page's
   kernel (its id is in #jupyter-config-data), asks it for the state of every widget, and draws
   each output in place of its script, with the same ipywidgets code JupyterLab uses
   (@jupyter-widgets/jupyterlab-manager's KernelWidgetManager and WidgetRenderer).

   It does what Voila's own front end did for these pages and nothing else: that one starts a
   whole JupyterLab application (its plugins, theme manager and extension loader, 3.9 MB of script)
   before it draws a widget. When the kernel cannot be reached, the page says so through
   companion.js (the event "companion:no-kernel"), instead of showing a page without its widgets.
   Built into tools/companion/frontend/ by build.mjs; see tools/frontend/README.md. */
import * as base from '@jupyter-widgets/base';
import * as controls from '@jupyter-widgets/controls';
import { JUPYTER_CONTROLS_VERSION } from '@jupyter-widgets/controls/lib/version';
import { KernelWidgetManager, WIDGET_VIEW_MIMETYPE } from '@jupyter-widgets/jupyterlab-manager/lib/manager';
import { OutputModel, OutputView, OUTPUT_WIDGET_VERSION } from '@jupyter-widgets/jupyterlab-manager/lib/output';
import { WidgetRenderer } from '@jupyter-widgets/jupyterlab-manager/lib/renderer';
import { RenderMimeRegistry, standardRendererFactories } from '@jupyterlab/rendermime';
import { KernelAPI, ServerConnection } from '@jupyterlab/services';
import { KernelConnection } from '@jupyterlab/services/lib/kernel/default';
import { Widget } from '@lumino/widgets';
// The stylesheets Voila's front end added at the end of the page's head, in its order: the
// rendered text's (JupyterLab's), then the widgets'.
import '@jupyterlab/rendermime/style/base.css';
import '@jupyter-widgets/base/css/index.css';
import '@jupyter-widgets/controls/css/widgets-base.css';
import './page.css';

const CELL_OUTPUT = 'script[type="application/vnd.voila.cell-output+json"]';

function pageConfig() {
  const element = document.getElementById('jupyter-config-data');
  return element ? JSON.parse(element.textContent) : {};
}

// The widget classes a kernel's ipywidgets 8 names: base, controls and the output widget.
function widgetManager(kernel, rendermime) {
  const manager = new KernelWidgetManager(kernel, rendermime);
  manager.register({
    name: '@jupyter-widgets/base',
    version: base.JUPYTER_WIDGETS_VERSION,
    exports: {
      WidgetModel: base.WidgetModel,
      WidgetView: base.WidgetView,
      DOMWidgetView: base.DOMWidgetView,
      DOMWidgetModel: base.DOMWidgetModel,
      LayoutModel: base.LayoutModel,
      LayoutView: base.LayoutView,
      StyleModel: base.StyleModel,
      StyleView: base.StyleView,
      ErrorWidgetView: base.ErrorWidgetView
    }
  });
  manager.register({ name: '@jupyter-widgets/controls', version: JUPYTER_CONTROLS_VERSION, exports: controls });
  manager.register({ name: '@jupyter-widgets/output', version: OUTPUT_WIDGET_VERSION, exports: { OutputModel, OutputView } });
  return manager;
}

// Each cell output in place of its script, once the kernel's widget states are all in (see start).
function drawOutputs(rendermime) {
  document.querySelectorAll(CELL_OUTPUT).forEach((script) => {
    const output = JSON.parse(script.textContent);
    const mimeType = rendermime.preferredMimeType(output.data, 'any');
    if (!mimeType) {
      return;
    }
    const renderer = rendermime.createRenderer(mimeType);
    renderer.renderModel(output).catch((error) => {
      const message = document.createElement('pre');
      message.className = 'lm-Widget jp-RenderedText';
      message.setAttribute('data-mime-type', 'application/vnd.jupyter.stderr');
      message.textContent = `This part of the page could not be shown: ${error.message}`;
      renderer.node.appendChild(message);
    });
    renderer.addClass('jp-OutputArea-output');
    const container = script.parentElement;
    container.removeChild(script);
    Widget.attach(renderer, container);
  });
}

// Leaving the page: Voila's shutdown beacon stops its kernel at once (else the culler does, later).
function stopKernelOnLeaving(baseUrl, kernel) {
  window.addEventListener('beforeunload', () => {
    const data = new FormData();
    const xsrf = document.cookie.match('\\b_xsrf=([^;]*)\\b');
    data.append('_xsrf', (xsrf && xsrf[1]) || '');
    navigator.sendBeacon(`${baseUrl}voila/api/shutdown/${kernel.id}`, data);
    kernel.dispose();
  });
}

async function start() {
  const config = pageConfig();
  const baseUrl = config.baseUrl || '/';
  const serverSettings = ServerConnection.makeSettings({ baseUrl });
  const rendermime = new RenderMimeRegistry({ initialFactories: standardRendererFactories });
  const model = config.kernelId ? await KernelAPI.getKernelModel(config.kernelId, serverSettings) : undefined;
  if (!model) {
    throw new Error(`the page's kernel ${config.kernelId || '(none named)'} is not running`);
  }
  const kernel = new KernelConnection({ model, serverSettings });
  const manager = widgetManager(kernel, rendermime);
  rendermime.addFactory(
    { safe: false, mimeTypes: [WIDGET_VIEW_MIMETYPE], createRenderer: (options) => new WidgetRenderer(options, manager) },
    -10
  );
  stopKernelOnLeaving(baseUrl, kernel);
  // Not before: a view asked for while the states are on their way looks for its model for 2 s
  // (ManagerBase.get_model), and on a busy machine can give up just as they arrive, showing
  // "Error displaying widget: model not found" for good.
  if (!manager.restoredStatus) {
    await new Promise((resolve) => manager.restored.connect(resolve));
  }
  drawOutputs(rendermime);
}

// The page's text is shown now (Voila's template hides it until its front end says the theme is
// loaded; here the theme is a stylesheet in the page's head), its widgets as they arrive.
window.themeLoaded = true;
if (window.cellLoaded && window.display_cells) {
  window.display_cells();
}
start().catch((error) => {
  console.error(`Supervisor Companion: the page's widgets cannot be drawn: ${error.message}`);
  window.dispatchEvent(new CustomEvent('companion:no-kernel', { detail: error.message }));
});
