import { readFileSync } from 'node:fs';

// The project's Dockerfile read as Docker reads it (instructions, continuation lines, stages), for the tests that
// check the image and run its very start command. No Docker engine runs in CI.

export interface Instruction {
  /** Upper case: FROM, RUN, CMD, ... */
  keyword: string;
  /** The rest of the instruction, continuation lines joined. */
  args: string;
  /** Index of the build stage (FROM) it belongs to. */
  stage: number;
}

export function readDockerfile(url = new URL('../../Dockerfile', import.meta.url)): Instruction[] {
  const logical: string[] = [];
  let pending = '';
  for (const line of readFileSync(url, 'utf8').split('\n')) {
    if (!pending && /^\s*(#|$)/.test(line)) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    logical.push((pending + line.trim()).trim());
    pending = '';
  }
  if (pending) logical.push(pending.trim());
  let stage = -1;
  return logical.map((text) => {
    const [keyword = '', ...rest] = text.split(/\s+/);
    if (keyword.toUpperCase() === 'FROM') stage += 1;
    return { keyword: keyword.toUpperCase(), args: rest.join(' '), stage };
  });
}

/** The instructions of the last stage: what the image that runs is made of. */
export function finalStage(instructions: Instruction[]): Instruction[] {
  const last = Math.max(...instructions.map((instruction) => instruction.stage));
  return instructions.filter((instruction) => instruction.stage === last);
}

/** An exec-form command (a JSON array), as CMD and HEALTHCHECK CMD must be for node to get signals itself. */
export function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((part) => typeof part === 'string')) {
    throw new Error(`not an exec-form command (a JSON array of strings): ${args}`);
  }
  return parsed;
}

/** The final stage's CMD, which docker-compose's services override per process. */
export function imageCommand(instructions = readDockerfile()): string[] {
  const cmd = finalStage(instructions).findLast((instruction) => instruction.keyword === 'CMD');
  if (!cmd) throw new Error('the Dockerfile has no CMD in its final stage');
  return execForm(cmd.args);
}

/** The final stage's HEALTHCHECK: its options (--interval=...) and its exec-form command. */
export function imageHealthCheck(instructions = readDockerfile()): { options: Record<string, string>; command: string[] } {
  const check = finalStage(instructions).findLast((instruction) => instruction.keyword === 'HEALTHCHECK');
  if (!check) throw new Error('the Dockerfile has no HEALTHCHECK in its final stage');
  const match = /^((?:--[a-z-]+=\S+\s+)*)CMD\s+(\[.*\])$/s.exec(check.args);
  if (!match) throw new Error(`HEALTHCHECK is not "[--option=value ...] CMD [exec form]": ${check.args}`);
  const options = Object.fromEntries(
    match[1]!
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map((option) => option.slice(2).split('=') as [string, string]),
  );
  return { options, command: execForm(match[2]!) };
}

/** One COPY: what from where (`from`: the stage it copies out of, else the build context) to where. */
export interface Copy {
  from?: string;
  sources: string[];
  destination: string;
}

export function copiesOf(stage: Instruction[]): Copy[] {
  return stage
    .filter((instruction) => instruction.keyword === 'COPY')
    .map(({ args }) => {
      const parts = args.split(/\s+/);
      const from = parts[0]?.startsWith('--from=') ? parts.shift()!.slice('--from='.length) : undefined;
      return { ...(from ? { from } : {}), sources: parts.slice(0, -1), destination: parts.at(-1)! };
    });
}

/** The stage whose `FROM … AS <name>` names it. */
export function stageNamed(instructions: Instruction[], name: string): Instruction[] {
  const from = instructions.find(
    (instruction) => instruction.keyword === 'FROM' && instruction.args.split(/\s+/).at(-1)?.toLowerCase() === name,
  );
  if (!from) throw new Error(`the Dockerfile has no stage named ${name}`);
  return instructions.filter((instruction) => instruction.stage === from.stage);
}
