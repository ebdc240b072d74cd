// A loopback HTTP server with the OpenAI embeddings API (POST /v1/embeddings) over a real local
// model, all-MiniLM-L6-v2 (quantized ONNX, run in process by langchain4j's ONNX runtime).
// Started by ops/embed.sh; kprec uses it as a soft teacher (`kprec label --embeddings`).
//
//   request:  {"model": "...", "input": "text" | ["text", ...]}
//   response: {"object":"list","model":"...","data":[{"object":"embedding","index":i,
//              "embedding":[...]}],"usage":{"prompt_tokens":n,"total_tokens":n}}
// Errors answer 400 (bad JSON, no input, more than MAX_INPUTS texts or a text over MAX_CHARS) or
// 405 (not POST) with {"error":{"message":"..."}}. GET /health answers 200 "ok".
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.langchain4j.data.embedding.Embedding;
import dev.langchain4j.data.segment.TextSegment;
import dev.langchain4j.model.embedding.EmbeddingModel;
import dev.langchain4j.model.embedding.onnx.allminilml6v2q.AllMiniLmL6V2QuantizedEmbeddingModel;
import dev.langchain4j.model.output.Response;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;

public final class EmbedServer {
    static final int MAX_INPUTS = 2048;
    static final int MAX_CHARS = 8192;
    static final int MAX_BODY = 16 << 20;
    static final String MODEL = "all-minilm-l6-v2-q";
    static final ObjectMapper JSON = new ObjectMapper();
    static EmbeddingModel model;

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: EmbedServer PORT [THREADS]");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        int threads = args.length > 1 ? Integer.parseInt(args[1]) : 2;
        model = new AllMiniLmL6V2QuantizedEmbeddingModel();
        HttpServer s = HttpServer.create(
                new InetSocketAddress(InetAddress.getLoopbackAddress(), port), 64);
        s.createContext("/v1/embeddings", EmbedServer::embeddings);
        s.createContext("/health", ex -> reply(ex, 200, "ok", "text/plain"));
        s.setExecutor(Executors.newFixedThreadPool(threads));
        s.start();
        System.err.println("embed-server: " + MODEL + " on 127.0.0.1:" + port);
    }

    static void reply(HttpExchange ex, int code, String body, String type) throws IOException {
        byte[] b = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", type);
        ex.sendResponseHeaders(code, b.length);
        try (OutputStream o = ex.getResponseBody()) {
            o.write(b);
        }
    }

    static void fail(HttpExchange ex, int code, String msg) throws IOException {
        ObjectNode e = JSON.createObjectNode();
        e.putObject("error").put("message", msg);
        reply(ex, code, JSON.writeValueAsString(e), "application/json");
    }

    static void embeddings(HttpExchange ex) throws IOException {
        try {
            if (!"POST".equals(ex.getRequestMethod())) {
                fail(ex, 405, "POST only");
                return;
            }
            byte[] body;
            try (InputStream in = ex.getRequestBody()) {
                body = in.readNBytes(MAX_BODY + 1);
            }
            if (body.length > MAX_BODY) {
                fail(ex, 400, "body over " + MAX_BODY + " bytes");
                return;
            }
            JsonNode req;
            try {
                req = JSON.readTree(body);
            } catch (IOException e) {
                fail(ex, 400, "bad JSON: " + e.getMessage());
                return;
            }
            JsonNode in = req == null ? null : req.get("input");
            List<TextSegment> segs = new ArrayList<>();
            if (in != null && in.isTextual()) {
                segs.add(TextSegment.from(in.asText()));
            } else if (in != null && in.isArray()) {
                for (JsonNode t : in) {
                    if (!t.isTextual()) {
                        fail(ex, 400, "input[] must hold strings");
                        return;
                    }
                    segs.add(TextSegment.from(t.asText()));
                }
            }
            if (segs.isEmpty() || segs.size() > MAX_INPUTS) {
                fail(ex, 400, "input: 1.." + MAX_INPUTS + " non-empty strings");
                return;
            }
            for (TextSegment t : segs) {
                if (t.text().isEmpty() || t.text().length() > MAX_CHARS) {
                    fail(ex, 400, "each input: 1.." + MAX_CHARS + " characters");
                    return;
                }
            }
            Response<List<Embedding>> r = model.embedAll(segs);
            ObjectNode out = JSON.createObjectNode();
            out.put("object", "list");
            out.put("model", MODEL);
            ArrayNode data = out.putArray("data");
            List<Embedding> es = r.content();
            for (int i = 0; i < es.size(); i++) {
                ObjectNode d = data.addObject();
                d.put("object", "embedding");
                d.put("index", i);
                ArrayNode v = d.putArray("embedding");
                for (float x : es.get(i).vector()) v.add(x);
            }
            int tokens = r.tokenUsage() != null && r.tokenUsage().inputTokenCount() != null
                    ? r.tokenUsage().inputTokenCount() : 0;
            out.putObject("usage").put("prompt_tokens", tokens).put("total_tokens", tokens);
            reply(ex, 200, JSON.writeValueAsString(out), "application/json");
        } catch (RuntimeException e) {
            fail(ex, 500, "model error: " + e);
        } finally {
            ex.close();
        }
    }
}
