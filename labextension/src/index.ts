/**
 * Jup2Kub in JupyterLab: a side panel with the current notebook's steps and DAG, buttons to
 * inspect, run and build it, a run's progress, a badge on each cell naming its step, and a
 * search box over the step catalog (every built or added step, any notebook), and the Runs view
 * of a deployed pipeline (a release, or the notebook's pipeline on its Kafka): its recent runs,
 * each step's state, and each run's results notebook opened in Lab.
 * The work is done by the server half (jup2kub.labserver) through /jup2kub/... endpoints.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin,
  ILabShell
} from '@jupyterlab/application';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

interface IStep {
  name: string;
  cells: number[];
  inputs: string[];
  outputs: string[];
  after: string[];
}

interface IInspection {
  error?: string;
  name: string;
  split: string;
  steps: IStep[];
  levels: string[][];
  cell_steps: { [cell: string]: string };
  svg: string | null;
}

interface IRunState {
  id: string;
  steps: { [step: string]: string };
  done: boolean;
  ok: boolean | null;
  results: string;
  log: string;
}

interface ICatalogHit {
  pipeline: string;
  step: string;
  notebook: string;
  cells: number[];
  inputs: { [variable: string]: { from: string; type: string } };
  outputs: { [variable: string]: string };
  imports: string[];
  matched: string[];
  lab_path: string | null;
}

interface ICatalogAnswer {
  catalog: string | null;
  results: ICatalogHit[];
  note: string | null;
}

interface IRunRow {
  run_id: string;
  state: string;
  steps: { [step: string]: { state: string; attempt?: number; error?: { ename?: string; evalue?: string; cell?: number } } };
  submitted_at: number | null;
}

interface IRecentRuns {
  source: string;
  steps: string[];
  runs: IRunRow[];
  problems: string[];
}

/** A state's mark on its badge (the colour says it too). */
const STATE_MARKS: { [state: string]: string } = {
  succeeded: '✓',
  skipped: '✓',
  failed: '✗',
  blocked: '⊘',
  started: '▶',
  running: '▶',
  retrying: '↻',
  busy: '▶',
  pending: '…',
  waiting: '…'
};

function mark(state: string): string {
  return Object.prototype.hasOwnProperty.call(STATE_MARKS, state) ? STATE_MARKS[state] : '?';
}

async function call<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'jup2kub', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  if (!response.ok) {
    throw new Error(`${response.status}: ${text}`);
  }
  return JSON.parse(text) as T;
}

/** What a failed call said: the server's JSON message when it gave one. */
function message(error: unknown): string {
  const text = String(error instanceof Error ? error.message : error);
  const json = text.indexOf('{');
  if (json >= 0) {
    try {
      const doc = JSON.parse(text.slice(json)) as { message?: string };
      if (doc.message) {
        return `${text.slice(0, json)}${doc.message}`;
      }
    } catch {
      // not JSON: the text as it is
    }
  }
  return text;
}

/** ``text`` safe in HTML, in element content and in quoted attribute values alike (a run id or
 * state read from Kafka is whatever was written there). */
function escape(text: string): string {
  const div = document.createElement('div');
  div.textContent = String(text);
  return div.innerHTML.replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

class Jup2KubPanel extends Widget {
  private notebook: NotebookPanel | null = null;
  private status: HTMLElement;
  private stepsNode: HTMLElement;
  private dagNode: HTMLElement;
  private runNode: HTMLElement;
  private searchBox: HTMLInputElement;
  private catalogNote: HTMLElement;
  private catalogNode: HTMLElement;
  private searchTimer: number | undefined;
  private searchSeq = 0;
  private runsForm: HTMLFormElement;
  private runsNote: HTMLElement;
  private runsNode: HTMLElement;
  private runsTimer: number | undefined;
  private runsBusy = false;

  constructor(
    private app: JupyterFrontEnd,
    tracker: INotebookTracker
  ) {
    super();
    this.id = 'jup2kub-panel';
    this.title.caption = 'Jup2Kub pipeline';
    this.title.label = 'Jup2Kub';
    this.addClass('jp-Jup2KubPanel');
    this.node.innerHTML = `
      <h2>Jup2Kub pipeline</h2>
      <div class="jp-Jup2Kub-buttons">
        <button class="jp-Button jp-mod-styled" data-action="inspect">Inspect</button>
        <button class="jp-Button jp-mod-styled jp-mod-accept" data-action="run">Run</button>
        <button class="jp-Button jp-mod-styled" data-action="build">Build chart</button>
      </div>
      <div class="jp-Jup2Kub-status"></div>
      <div class="jp-Jup2Kub-steps"></div>
      <div class="jp-Jup2Kub-dag"></div>
      <div class="jp-Jup2Kub-run"></div>
      <h3>Runs of a deployed pipeline</h3>
      <form class="jp-Jup2Kub-runs-form">
        <label><input type="radio" name="source" value="release" checked /> release</label>
        <label><input type="radio" name="source" value="kafka" /> notebook on Kafka</label>
        <div class="jp-Jup2Kub-runs-release">
          <label class="jp-Jup2Kub-field">release
            <input name="release" class="jp-mod-styled" placeholder="its name" /></label>
          <label class="jp-Jup2Kub-field">namespace
            <input name="namespace" class="jp-mod-styled" placeholder="default: current" /></label>
        </div>
        <div class="jp-Jup2Kub-runs-kafka" hidden>
          <label class="jp-Jup2Kub-field">Kafka
            <input name="kafka" class="jp-mod-styled" placeholder="bootstrap, host:port" /></label>
          <label class="jp-Jup2Kub-field">state
            <input name="state" class="jp-mod-styled"
              placeholder="state directory (for results)" /></label>
        </div>
        <label class="jp-Jup2Kub-field">notebook
          <input name="path" class="jp-mod-styled" placeholder="for results" /></label>
        <div class="jp-Jup2Kub-runs-buttons">
          <button type="submit" class="jp-Button jp-mod-styled jp-mod-accept"
            data-action="runs">Show runs</button>
          <label><input type="checkbox" name="auto" /> refresh every 5 s</label>
        </div>
      </form>
      <div class="jp-Jup2Kub-runs-note"></div>
      <div class="jp-Jup2Kub-runs"></div>
      <h3>Step catalog</h3>
      <input type="search" class="jp-Jup2Kub-search jp-mod-styled"
        placeholder="Search steps: names, variables, packages, words" />
      <div class="jp-Jup2Kub-catalog-note"></div>
      <ul class="jp-Jup2Kub-catalog"></ul>`;
    this.status = this.node.querySelector('.jp-Jup2Kub-status') as HTMLElement;
    this.stepsNode = this.node.querySelector('.jp-Jup2Kub-steps') as HTMLElement;
    this.dagNode = this.node.querySelector('.jp-Jup2Kub-dag') as HTMLElement;
    this.runNode = this.node.querySelector('.jp-Jup2Kub-run') as HTMLElement;
    this.searchBox = this.node.querySelector('.jp-Jup2Kub-search') as HTMLInputElement;
    this.catalogNote = this.node.querySelector('.jp-Jup2Kub-catalog-note') as HTMLElement;
    this.catalogNode = this.node.querySelector('.jp-Jup2Kub-catalog') as HTMLElement;
    this.runsForm = this.node.querySelector('.jp-Jup2Kub-runs-form') as HTMLFormElement;
    this.runsNote = this.node.querySelector('.jp-Jup2Kub-runs-note') as HTMLElement;
    this.runsNode = this.node.querySelector('.jp-Jup2Kub-runs') as HTMLElement;
    this.runsForm.addEventListener('submit', event => {
      event.preventDefault();
      void this.showRuns();
    });
    this.runsForm.querySelectorAll('input[name="source"]').forEach(radio => {
      radio.addEventListener('change', () => this.sourceChanged());
    });
    this.field('auto').addEventListener('change', () => this.autoRefresh());
    this.searchBox.addEventListener('input', () => {
      window.clearTimeout(this.searchTimer);
      this.searchTimer = window.setTimeout(() => void this.search(), 250);
    });
    this.searchBox.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        window.clearTimeout(this.searchTimer);
        void this.search();
      }
    });
    this.node.querySelectorAll('.jp-Jup2Kub-buttons button').forEach(b => {
      const button = b as HTMLButtonElement;
      button.addEventListener('click', () => {
        const action = button.dataset.action;
        if (action === 'inspect') {
          void this.inspect();
        } else if (action === 'run') {
          void this.run();
        } else if (action === 'build') {
          void this.build();
        }
      });
    });
    tracker.currentChanged.connect((_, panel) => this.follow(panel));
    this.follow(tracker.currentWidget);
  }

  private follow(panel: NotebookPanel | null): void {
    this.notebook = panel;
    const path = this.field('path');
    if (panel !== null && path.value === '') {
      path.value = panel.context.path; // the results' notebook: the one in front, by default
    }
    if (panel === null) {
      this.say('Open a notebook to see its pipeline.');
      return;
    }
    void panel.context.ready.then(() => this.inspect());
    panel.context.saveState.connect((_, state) => {
      if (state === 'completed' && this.notebook === panel) {
        void this.inspect();
      }
    });
  }

  private say(text: string): void {
    this.status.textContent = text;
  }

  private get path(): string | null {
    return this.notebook ? this.notebook.context.path : null;
  }

  async inspect(): Promise<void> {
    const path = this.path;
    if (path === null) {
      return;
    }
    this.say(`Inspecting ${path} (as saved)...`);
    let doc: IInspection;
    try {
      doc = await call<IInspection>(`inspect?path=${encodeURIComponent(path)}`);
    } catch (error) {
      this.say(`Inspect failed: ${error}`);
      return;
    }
    if (doc.error) {
      this.say(doc.error);
      this.stepsNode.innerHTML = '';
      this.dagNode.innerHTML = '';
      this.badges({});
      return;
    }
    this.say(
      `${doc.name}: ${doc.steps.length} steps (${doc.split}); run order: ` +
        doc.levels.map(level => level.join(' | ')).join(' → ')
    );
    const rows = doc.steps
      .map(
        s =>
          `<tr data-step="${escape(s.name)}"><td class="jp-Jup2Kub-step">${escape(s.name)}</td>` +
          `<td>${s.cells.join(', ')}</td><td>${escape(s.inputs.join(', ') || '-')}</td>` +
          `<td>${escape(s.outputs.join(', ') || '-')}</td></tr>`
      )
      .join('');
    this.stepsNode.innerHTML =
      '<table><tr><th>step</th><th>cells</th><th>inputs</th><th>outputs</th></tr>' +
      rows +
      '</table>';
    this.dagNode.innerHTML = doc.svg ?? '<p>(install Graphviz for the DAG picture)</p>';
    this.badges(doc.cell_steps);
  }

  private badges(cellSteps: { [cell: string]: string }): void {
    const notebook = this.notebook;
    if (notebook === null) {
      return;
    }
    notebook.content.widgets.forEach((cell, index) => {
      cell.node.querySelectorAll('.jp-Jup2Kub-badge').forEach(b => b.remove());
      const step = cellSteps[String(index)];
      if (step !== undefined) {
        const badge = document.createElement('div');
        badge.className = 'jp-Jup2Kub-badge';
        badge.textContent = step;
        badge.title = `Jup2Kub step ${step}`;
        cell.node.appendChild(badge);
      }
    });
  }

  async run(): Promise<void> {
    const path = this.path;
    if (path === null) {
      return;
    }
    if (this.notebook && this.notebook.context.model.dirty) {
      await this.notebook.context.save();
    }
    this.say(`Running ${path} as a pipeline...`);
    let state = await call<IRunState>('runs', {
      method: 'POST',
      body: JSON.stringify({ path })
    });
    while (!state.done) {
      this.showRun(state);
      await new Promise(resolve => setTimeout(resolve, 500));
      state = await call<IRunState>(`runs/${state.id}`);
    }
    this.showRun(state);
    this.say(state.ok ? 'Run succeeded.' : 'Run failed: see the results notebook.');
  }

  private showRun(state: IRunState): void {
    const rows = Object.entries(state.steps)
      .map(
        ([step, what]) =>
          `<tr><td>${escape(step)}</td><td class="jp-Jup2Kub-state-${what}">${what}</td></tr>`
      )
      .join('');
    const link = state.done
      ? `<p><a href="#" class="jp-Jup2Kub-results">${escape(state.results)}</a></p>`
      : '';
    this.runNode.innerHTML = `<h3>Run</h3><table>${rows}</table>${link}`;
    const anchor = this.runNode.querySelector('.jp-Jup2Kub-results');
    if (anchor) {
      anchor.addEventListener('click', event => {
        event.preventDefault();
        void this.app.commands.execute('docmanager:open', { path: state.results });
      });
    }
  }

  /** Searches the catalog for the box's words; an answer to an older search is dropped. */
  async search(): Promise<void> {
    const text = this.searchBox.value.trim();
    const seq = ++this.searchSeq;
    if (text === '') {
      this.catalogNote.textContent = '';
      this.catalogNode.innerHTML = '';
      return;
    }
    let answer: ICatalogAnswer;
    try {
      answer = await call<ICatalogAnswer>(`catalog?q=${encodeURIComponent(text)}`);
    } catch (error) {
      if (seq === this.searchSeq) {
        this.catalogNote.textContent = `Catalog search failed: ${error}`;
        this.catalogNode.innerHTML = '';
      }
      return;
    }
    if (seq !== this.searchSeq) {
      return;
    }
    const count = answer.results.length;
    this.catalogNote.textContent =
      answer.note ?? `${count} step${count === 1 ? '' : 's'} in ${answer.catalog}`;
    this.catalogNode.innerHTML = answer.results.map(hit => this.hit(hit)).join('');
    this.catalogNode.querySelectorAll('a[data-path]').forEach(anchor => {
      anchor.addEventListener('click', event => {
        event.preventDefault();
        const path = (anchor as HTMLElement).dataset.path;
        void this.app.commands.execute('docmanager:open', { path });
      });
    });
  }

  private hit(hit: ICatalogHit): string {
    const reads = Object.entries(hit.inputs).map(
      ([name, input]) => `${name} ← ${input.from}` + (input.type === 'unknown' ? '' : `: ${input.type}`)
    );
    const writes = Object.entries(hit.outputs).map(
      ([name, type]) => name + (type === 'unknown' ? '' : `: ${type}`)
    );
    const label = (name: string): string => `<span class="jp-Jup2Kub-label">${name}</span>`;
    const line = (name: string, items: string[]): string =>
      `<div>${label(name)} ${escape(items.join(', ') || '-')}</div>`;
    const cells = ` (cells ${hit.cells.join(', ')})`;
    // a notebook under the server's root opens in Lab; another is named in full
    const notebook =
      hit.lab_path === null
        ? line('notebook', [hit.notebook + cells])
        : `<div>${label('notebook')} <a href="#" class="jp-Jup2Kub-open" ` +
          `data-path="${escape(hit.lab_path)}">${escape(hit.lab_path)}</a>${cells}</div>`;
    return (
      `<li class="jp-Jup2Kub-hit" data-step="${escape(hit.pipeline + '/' + hit.step)}">` +
      `<div class="jp-Jup2Kub-hit-name">${escape(hit.pipeline)}/<b>${escape(hit.step)}</b></div>` +
      notebook +
      line('reads', reads) +
      line('writes', writes) +
      line('imports', hit.imports) +
      `<div class="jp-Jup2Kub-matched">matched ${escape(hit.matched.join(', '))}</div></li>`
    );
  }

  private field(name: string): HTMLInputElement {
    return this.runsForm.querySelector(`input[name="${name}"]`) as HTMLInputElement;
  }

  private get source(): string {
    const checked = this.runsForm.querySelector('input[name="source"]:checked');
    return (checked as HTMLInputElement | null)?.value ?? 'release';
  }

  private sourceChanged(): void {
    const kafka = this.source === 'kafka';
    (this.node.querySelector('.jp-Jup2Kub-runs-release') as HTMLElement).hidden = kafka;
    (this.node.querySelector('.jp-Jup2Kub-runs-kafka') as HTMLElement).hidden = !kafka;
    this.runsNode.innerHTML = '';
    this.runsNote.textContent = '';
  }

  private autoRefresh(): void {
    window.clearInterval(this.runsTimer);
    this.runsTimer = undefined;
    if (this.field('auto').checked) {
      this.runsTimer = window.setInterval(() => {
        if (this.isVisible && !this.runsBusy) {
          void this.showRuns();
        }
      }, 5000);
      void this.showRuns();
    }
  }

  /** The query naming the pipeline the form describes; null (and a note) when incomplete. */
  private pipelineQuery(): string | null {
    const value = (name: string): string => this.field(name).value.trim();
    const query = new URLSearchParams();
    if (this.source === 'release') {
      if (value('release') === '') {
        this.runsNote.textContent = 'Name the release (and its namespace).';
        return null;
      }
      query.set('release', value('release'));
      if (value('namespace') !== '') {
        query.set('namespace', value('namespace'));
      }
    } else {
      if (value('path') === '' || value('kafka') === '') {
        this.runsNote.textContent = "Name the notebook and its pipeline's Kafka (host:port).";
        return null;
      }
      query.set('path', value('path'));
      query.set('kafka', value('kafka'));
    }
    return query.toString();
  }

  /** Lists the pipeline's recent runs, newest first, with each step's state. */
  async showRuns(): Promise<void> {
    const query = this.pipelineQuery();
    if (query === null) {
      return;
    }
    this.runsBusy = true;
    let answer: IRecentRuns;
    try {
      answer = await call<IRecentRuns>(`deployed/runs?${query}`);
    } catch (error) {
      this.runsNote.textContent = `Runs could not be read: ${message(error)}`;
      return;
    } finally {
      this.runsBusy = false;
    }
    const count = answer.runs.length;
    const when = new Date().toLocaleTimeString();
    this.runsNote.textContent =
      `${count} recent run${count === 1 ? '' : 's'} of ${answer.source} (${when})` +
      answer.problems.map(p => `; ${p}`).join('');
    const rows = answer.runs.map(run => this.runRow(run, answer.steps)).join('');
    this.runsNode.innerHTML =
      count === 0
        ? ''
        : '<table><tr><th>run</th><th>steps</th><th></th></tr>' + rows + '</table>';
    this.runsNode.querySelectorAll('button[data-run]').forEach(button => {
      button.addEventListener('click', () => {
        void this.openResults((button as HTMLElement).dataset.run as string);
      });
    });
  }

  private runRow(run: IRunRow, steps: string[]): string {
    const badge = (name: string, state: string, title: string): string =>
      `<span class="jp-Jup2Kub-state jp-Jup2Kub-state-${escape(state)}" ` +
      `data-step="${escape(name)}" data-state="${escape(state)}" title="${escape(title)}">` +
      `${escape(name)} ${mark(state)}</span>`;
    const names = [...steps, ...Object.keys(run.steps).filter(s => !steps.includes(s))];
    const badges = names
      .map(name => {
        const step = run.steps[name];
        if (step === undefined) {
          return badge(name, 'waiting', `${name}: nothing yet`);
        }
        let title = `${name}: ${step.state}`;
        if (step.attempt !== undefined) {
          title += ` (attempt ${step.attempt})`;
        }
        if (step.error) {
          title += `: ${step.error.ename}: ${step.error.evalue} (cell ${step.error.cell})`;
        }
        return badge(name, step.state, title);
      })
      .join('');
    const submitted =
      run.submitted_at === null
        ? ''
        : `<div class="jp-Jup2Kub-label">${new Date(run.submitted_at * 1000).toLocaleString()}</div>`;
    return (
      `<tr class="jp-Jup2Kub-run-row" data-run="${escape(run.run_id)}" ` +
      `data-state="${escape(run.state)}">` +
      `<td><div class="jp-Jup2Kub-run-id">${escape(run.run_id)}</div>${submitted}` +
      `<span class="jp-Jup2Kub-state jp-Jup2Kub-state-${escape(run.state)}">` +
      `${escape(run.state)}</span></td>` +
      `<td class="jp-Jup2Kub-run-steps">${badges}</td>` +
      `<td><button class="jp-Button jp-mod-styled" data-run="${escape(run.run_id)}" ` +
      'title="Assemble this run\'s results notebook and open it">results</button></td></tr>'
    );
  }

  /** Writes the run's results notebook beside the notebook (a fresh name) and opens it. */
  async openResults(runId: string): Promise<void> {
    const value = (name: string): string => this.field(name).value.trim();
    const body: { [key: string]: string } = { path: value('path'), run_id: runId };
    if (this.source === 'release') {
      body.release = value('release');
      if (value('namespace') !== '') {
        body.namespace = value('namespace');
      }
    } else {
      body.state = value('state');
    }
    if (body.path === '' || (this.source === 'kafka' && body.state === '')) {
      this.runsNote.textContent =
        this.source === 'kafka'
          ? "The results need the notebook and the pipeline's state directory."
          : 'The results need the notebook the release was built from.';
      return;
    }
    this.runsNote.textContent = `Assembling the results of run ${runId}...`;
    let answer: { path: string; status: string };
    try {
      answer = await call<{ path: string; status: string }>('deployed/results', {
        method: 'POST',
        body: JSON.stringify(body)
      });
    } catch (error) {
      this.runsNote.textContent = `Results of run ${runId}: ${message(error)}`;
      return;
    }
    this.runsNote.textContent = `Run ${runId} (${answer.status}): ${answer.path}`;
    await this.app.commands.execute('docmanager:open', { path: answer.path });
  }

  async build(): Promise<void> {
    const path = this.path;
    if (path === null) {
      return;
    }
    this.say(`Building the chart of ${path}...`);
    const result = await call<{ ok: boolean; chart: string; output: string }>('build', {
      method: 'POST',
      body: JSON.stringify({ path })
    });
    this.say(result.ok ? `Chart written to ${result.chart}` : 'Build failed');
    this.runNode.innerHTML = `<pre class="jp-Jup2Kub-build">${escape(result.output)}</pre>`;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jup2kub-labextension:plugin',
  description: 'Jup2Kub: the notebook as a pipeline (steps, DAG, run, build)',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ILabShell],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker) => {
    const panel = new Jup2KubPanel(app, tracker);
    app.shell.add(panel, 'right', { rank: 900 });
  }
};

export default plugin;
