// invoke_stream.mjs - the AWS SDK for JavaScript v3 reads libfaas's
// InvokeWithResponseStream: a streaming function's PayloadChunk events in
// order, then InvokeComplete; a failure mid-stream as InvokeComplete with
// its ErrorCode; a function that does not stream as its JSON in one chunk.
//
// node invoke_stream.mjs http://127.0.0.1:PORT  (tools/sdk-stream.sh runs it
// against the faas-gateway with the demo's countdown function). Exits 0
// when every check holds, 1 with the first that does not.
import { LambdaClient, InvokeWithResponseStreamCommand } from "@aws-sdk/client-lambda";

const endpoint = process.argv[2];
const client = new LambdaClient({
    endpoint,
    region: "local",
    credentials: { accessKeyId: "local", secretAccessKey: "local" },
});

function check(ok, what) {
    if (!ok) {
        console.error(`sdk-stream: FAILED: ${what}`);
        process.exit(1);
    }
    console.log(`sdk-stream: ok: ${what}`);
}

async function invoke(name, event) {
    const out = await client.send(new InvokeWithResponseStreamCommand({
        FunctionName: name,
        Payload: Buffer.from(JSON.stringify(event)),
    }));
    const chunks = [];
    let complete = null, completeBeforeLastChunk = false;
    for await (const ev of out.EventStream) {
        if (ev.PayloadChunk) {
            chunks.push(Buffer.from(ev.PayloadChunk.Payload).toString());
            completeBeforeLastChunk ||= complete !== null;
        }
        if (ev.InvokeComplete)
            complete = ev.InvokeComplete;
    }
    return { out, chunks, complete, completeBeforeLastChunk };
}

const ok = await invoke("countdown", { n: 3, pause_ms: 20 });
check(ok.out.StatusCode === 200, `StatusCode 200 (got ${ok.out.StatusCode})`);
check(ok.out.ExecutedVersion === "$LATEST", "ExecutedVersion $LATEST");
check(ok.chunks.join("") === "3\n2\n1\nliftoff\n", `the streamed bytes (${JSON.stringify(ok.chunks)})`);
check(ok.chunks.length === 4, "one PayloadChunk per write");
check(ok.complete !== null && !ok.complete.ErrorCode, "InvokeComplete, no ErrorCode");
check(!ok.completeBeforeLastChunk, "InvokeComplete last");

const bad = await invoke("countdown", { n: 3, fail: 1 });
check(bad.chunks.join("") === "3\n", "the bytes before the failure");
check(bad.complete && bad.complete.ErrorCode === "Countdown.Aborted",
      `InvokeComplete's ErrorCode (${bad.complete && bad.complete.ErrorCode})`);
check(bad.complete.ErrorDetails === "stopped at 3", "InvokeComplete's ErrorDetails");

const plain = await invoke("hello", { name: "sdk" });
check(plain.chunks.length === 1 && JSON.parse(plain.chunks[0]).message === "Hello, sdk!",
      "a function that does not stream: its JSON as one chunk");
check(plain.complete && !plain.complete.ErrorCode, "and InvokeComplete");

let missing = null;
try {
    await invoke("no-such-function", {});
} catch (e) {
    missing = e;
}
check(missing && missing.name === "ResourceNotFoundException",
      `an unknown function: ResourceNotFoundException (${missing && missing.name})`);
