// Checks CryptoCity KZTE invoices with the official Solana Pay library (@solana/pay).
// stdin: {"rpcUrl": "...", "uris": ["solana:..."], "payments": [{"uri": "...", "signature": "..."}]}
// stdout: {"parsed": [fields | {"error"}], "validated": [{"ok": true} | {"ok": false, "error"}]}
import { parseURL, validateTransfer } from '@solana/pay';
import { createSolanaRpc } from '@solana/kit';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString('utf8'));

function describe(fields) {
    // Numbers and addresses to plain JSON (amount as the library's own number, printed exactly).
    return {
        recipient: fields.recipient,
        amount: fields.amount === undefined ? null : String(fields.amount),
        splToken: fields.splToken ?? null,
        reference: fields.reference ?? [],
        label: fields.label ?? null,
        message: fields.message ?? null,
        memo: fields.memo ?? null,
    };
}

const parsed = (request.uris ?? []).map(uri => {
    try {
        return describe(parseURL(uri));
    } catch (error) {
        return { error: `${error.name}: ${error.message}` };
    }
});

const validated = [];
if ((request.payments ?? []).length) {
    const rpc = createSolanaRpc(request.rpcUrl);
    for (const { uri, signature } of request.payments) {
        try {
            const { recipient, amount, splToken, reference, memo } = parseURL(uri);
            await validateTransfer(rpc, signature, { recipient, amount, splToken, reference, memo });
            validated.push({ ok: true });
        } catch (error) {
            validated.push({ ok: false, error: `${error.name}: ${error.message}` });
        }
    }
}

process.stdout.write(JSON.stringify({ parsed, validated }) + '\n');
