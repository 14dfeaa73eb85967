/* responses_test: the Responses API translator (providers/responses.h):
 * responses_parse, responses_begin (request + stored history -> chat
 * request, every refusal), whole chat answers -> Response objects, chunk
 * streams -> the typed event stream (order, sequence numbers, the final
 * Response), and the stored conversation. JSON in this file is written
 * with single quotes, turned into double quotes by J(). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "provider_fixture.h"
#include "providers/inbound.h"
#include "providers/responses.h"

#define OPS (&inbound_responses_ops)

static struct arena A;

static int setup(void **state)
{
    (void)state;
    arena_init(&A);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    arena_free(&A);
    return 0;
}

/* The text with ' turned into " (arena). */
static char *J(const char *s)
{
    char *o = arena_strdup(&A, s);
    for (char *p = o; *p; p++)
        if (*p == '\'') *p = '"';
    return o;
}

/* The JSON text of obj[key] (arena). */
static const char *pj_dump_test(const json_t *obj, const char *key)
{
    char *t = json_dumps(json_object_get(obj, key), JSON_COMPACT | JSON_ENCODE_ANY);
    assert_non_null(t);
    char *o = arena_strdup(&A, t);
    free(t);
    return o;
}

static void assert_json(const char *what, const char *want, const char *got, size_t got_len)
{
    const char *w = J(want);
    fx_assert_json(what, w, strlen(w), got, got_len);
}

/* ---- requests ---- */

/* Translates body (and history) and compares the chat request with want;
 * the chat request must pass the gateway's scan. */
static struct responses_ctx *begin_ok(const char *body, const char *history, const char *want)
{
    const char *b = J(body), *h = history ? J(history) : NULL;
    char *chat = NULL;
    size_t len = 0;
    struct inbound_error e;
    struct responses_ctx *c = responses_begin(&A, b, strlen(b), h, h ? strlen(h) : 0, "resp_abc",
                                              1700000000, &chat, &len, &e);
    if (!c) fail_msg("refused (%s): %s -- %s", e.param, e.message, b);
    if (want) assert_json("chat request", want, chat, len);
    struct req_facts f;
    struct scan_error se;
    if (scan_request(SCAN_CHAT, chat, len, &f, &se) != 0) fail_msg("scan refuses %s: %s", chat, se.message);
    return c;
}

static void begin_refused(const char *body, const char *history, const char *param, bool invalid_json)
{
    const char *b = J(body), *h = history ? J(history) : NULL;
    char *chat = NULL;
    size_t len = 0;
    struct inbound_error e;
    struct responses_ctx *c = responses_begin(&A, b, strlen(b), h, h ? strlen(h) : 0, "resp_abc",
                                              1700000000, &chat, &len, &e);
    if (c) fail_msg("accepted: %s -> %s", b, chat);
    if (strcmp(e.param, param) != 0) fail_msg("param '%s' != '%s' for %s (%s)", e.param, param, b, e.message);
    assert_int_equal(e.invalid_json, invalid_json);
    assert_true(e.message[0] != '\0');
}

static void test_parse(void **state)
{
    (void)state;
    struct responses_request r;
    struct inbound_error e;
    const char *b = J("{'model':'gpt-4o','input':'hi','stream':true,'store':false,'previous_response_id':'resp_1'}");
    assert_int_equal(responses_parse(&A, b, strlen(b), &r, &e), 0);
    assert_string_equal(r.model, "gpt-4o");
    assert_true(r.stream);
    assert_false(r.store);
    assert_string_equal(r.previous_response_id, "resp_1");
    b = J("{'input':'hi','previous_response_id':null}");
    assert_int_equal(responses_parse(&A, b, strlen(b), &r, &e), 0);
    assert_string_equal(r.model, "");
    assert_false(r.stream);
    assert_true(r.store);
    assert_null(r.previous_response_id);
    static const struct {
        const char *body, *param;
        bool invalid_json;
    } bad[] = {
        {"{", "", true},
        {"[1]", "", true},
        {"{'model':5}", "model", false},
        {"{'model':'m','stream':'yes'}", "stream", false},
        {"{'model':'m','store':1}", "store", false},
        {"{'model':'m','previous_response_id':5}", "previous_response_id", false},
        {"{'model':'m','background':true}", "background", false},
        {"{'model':'m','conversation':'conv_1'}", "conversation", false},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        b = J(bad[i].body);
        if (responses_parse(&A, b, strlen(b), &r, &e) != -1) fail_msg("accepted %s", b);
        assert_string_equal(e.param, bad[i].param);
        assert_int_equal(e.invalid_json, bad[i].invalid_json);
        assert_true(e.message[0] != '\0');
    }
}

static void test_begin_string_input(void **state)
{
    (void)state;
    begin_ok("{'model':'anthropic/claude-x','instructions':'Be brief.','input':'Hello','max_output_tokens':100,"
             "'temperature':0.5,'top_p':0.9,'user':'u1','metadata':{'k':'v'},'store':true,'truncation':'auto',"
             "'include':['reasoning.encrypted_content'],'prompt_cache_key':'p','service_tier':'auto',"
             "'safety_identifier':'s','previous_response_id':null,'stream':true}",
             NULL,
             "{'model':'anthropic/claude-x','messages':[{'role':'system','content':'Be brief.'},"
             "{'role':'user','content':'Hello'}],'max_tokens':100,'temperature':0.5,'top_p':0.9,"
             "'user':'u1','stream':true,'stream_options':{'include_usage':true}}");
    /* No instructions, no stream. */
    begin_ok("{'model':'m','input':'x'}", NULL, "{'model':'m','messages':[{'role':'user','content':'x'}]}");
}

static void test_begin_items(void **state)
{
    (void)state;
    begin_ok("{'model':'m','input':["
             "{'role':'developer','content':'dev rules'},"
             "{'type':'message','role':'system','content':[{'type':'input_text','text':'a'},{'type':'input_text','text':'b'}]},"
             "{'role':'user','content':[{'type':'input_text','text':'look'},"
             "{'type':'input_image','image_url':'https://x/i.png','detail':'low'}]},"
             "{'role':'user','content':[{'type':'input_text','text':'one'},{'type':'input_text','text':'two'}]},"
             "{'type':'reasoning','id':'rs_1','summary':[]},"
             "{'role':'assistant','content':[{'type':'output_text','text':'I will call.','annotations':[]}]},"
             "{'type':'function_call','call_id':'c1','name':'f','arguments':'{\\'a\\':1}'},"
             "{'type':'function_call','call_id':'c2','name':'g','arguments':'{}'},"
             "{'type':'function_call_output','call_id':'c1','output':'r1'},"
             "{'type':'function_call_output','call_id':'c2','output':[{'type':'input_text','text':'r2'}]},"
             "{'type':'function_call','call_id':'c3','name':'h','arguments':'{}'},"
             "{'type':'function_call_output','call_id':'c3','output':'r3'},"
             "{'role':'assistant','content':[{'type':'refusal','refusal':'no'}]}"
             "]}",
             NULL,
             "{'model':'m','messages':["
             "{'role':'system','content':'dev rules'},"
             "{'role':'system','content':'a\\nb'},"
             "{'role':'user','content':[{'type':'text','text':'look'},"
             "{'type':'image_url','image_url':{'url':'https://x/i.png','detail':'low'}}]},"
             "{'role':'user','content':'one\\ntwo'},"
             "{'role':'assistant','content':'I will call.','tool_calls':["
             "{'id':'c1','type':'function','function':{'name':'f','arguments':'{\\'a\\':1}'}},"
             "{'id':'c2','type':'function','function':{'name':'g','arguments':'{}'}}]},"
             "{'role':'tool','content':'r1','tool_call_id':'c1'},"
             "{'role':'tool','content':'r2','tool_call_id':'c2'},"
             "{'role':'assistant','content':null,'tool_calls':["
             "{'id':'c3','type':'function','function':{'name':'h','arguments':'{}'}}]},"
             "{'role':'tool','content':'r3','tool_call_id':'c3'},"
             "{'role':'assistant','content':'no'}"
             "]}");
}

static void test_begin_history(void **state)
{
    (void)state;
    /* The history (an earlier turn's input and output items) comes after
     * the instructions and before the new input; instructions are not
     * carried in the history. */
    const char *hist = "[{'type':'message','role':'user','content':[{'type':'input_text','text':'q1'}]},"
                       "{'id':'msg_x_0','type':'message','status':'completed','role':'assistant',"
                       "'content':[{'type':'output_text','text':'a1','annotations':[]}]},"
                       "{'id':'fc_x_1','type':'function_call','status':'completed','call_id':'c1','name':'f','arguments':'{}'}]";
    struct responses_ctx *c = begin_ok(
        "{'model':'m','instructions':'sys','previous_response_id':'resp_x','input':["
        "{'type':'function_call_output','call_id':'c1','output':'42'}]}",
        hist,
        "{'model':'m','messages':[{'role':'system','content':'sys'},{'role':'user','content':'q1'},"
        "{'role':'assistant','content':'a1','tool_calls':[{'id':'c1','type':'function','function':{'name':'f','arguments':'{}'}}]},"
        "{'role':'tool','content':'42','tool_call_id':'c1'}]}");
    assert_null(responses_result(c, NULL));
    assert_null(responses_conversation(c, NULL));
    assert_null(responses_turn(c, NULL));
    const char *ans = J("{'id':'chatcmpl-1','object':'chat.completion','created':1,'model':'m-2024',"
                        "'choices':[{'index':0,'message':{'role':'assistant','content':'done'},'finish_reason':'stop'}],"
                        "'usage':{'prompt_tokens':10,'completion_tokens':2,'total_tokens':12}}");
    char *out;
    size_t len;
    assert_int_equal(OPS->response_from_openai(&A, c, ans, strlen(ans), &out, &len), 0);
    size_t clen;
    const char *conv = responses_conversation(c, &clen);
    assert_non_null(conv);
    assert_json("conversation",
                "[{'type':'message','role':'user','content':[{'type':'input_text','text':'q1'}]},"
                "{'id':'msg_x_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','text':'a1','annotations':[]}]},"
                "{'id':'fc_x_1','type':'function_call','status':'completed','call_id':'c1','name':'f','arguments':'{}'},"
                "{'type':'function_call_output','call_id':'c1','output':'42'},"
                "{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','annotations':[],'text':'done'}]}]",
                conv, clen);
    /* the turn: this request's input and this answer's output, no history */
    size_t tlen;
    const char *turn = responses_turn(c, &tlen);
    assert_json("turn",
                "[{'type':'function_call_output','call_id':'c1','output':'42'},"
                "{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','annotations':[],'text':'done'}]}]",
                turn, tlen);
    size_t rlen;
    const char *res = responses_result(c, &rlen);
    assert_non_null(res);
    assert_int_equal(rlen, len);
    assert_memory_equal(res, out, len);
    /* A string input is stored as a user message item; reasoning items are not stored. */
    c = begin_ok("{'model':'m','input':'hi'}", NULL, NULL);
    assert_int_equal(OPS->response_from_openai(&A, c, ans, strlen(ans), &out, &len), 0);
    conv = responses_conversation(c, &clen);
    assert_json("conversation",
                "[{'type':'message','role':'user','content':[{'type':'input_text','text':'hi'}]},"
                "{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','annotations':[],'text':'done'}]}]",
                conv, clen);
    c = begin_ok("{'model':'m','input':[{'role':'user','content':'q'},{'type':'reasoning','id':'rs','summary':[]}]}", NULL, NULL);
    assert_int_equal(OPS->response_from_openai(&A, c, ans, strlen(ans), &out, &len), 0);
    conv = responses_conversation(c, &clen);
    assert_json("conversation",
                "[{'type':'message','role':'user','content':'q'},"
                "{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','annotations':[],'text':'done'}]}]",
                conv, clen);
}

static void test_begin_tools_formats(void **state)
{
    (void)state;
    begin_ok("{'model':'m','input':'x','tools':[{'type':'function','name':'get','description':'d',"
             "'parameters':{'type':'object','properties':{}},'strict':true},{'type':'function','name':'put'}],"
             "'tool_choice':{'type':'function','name':'get'},'parallel_tool_calls':false,"
             "'text':{'format':{'type':'json_schema','name':'out','schema':{'type':'object'},'strict':true},'verbosity':'low'},"
             "'reasoning':{'effort':'high','summary':'auto'}}",
             NULL,
             "{'model':'m','messages':[{'role':'user','content':'x'}],'tools':["
             "{'type':'function','function':{'name':'get','description':'d','parameters':{'type':'object','properties':{}},'strict':true}},"
             "{'type':'function','function':{'name':'put'}}],"
             "'tool_choice':{'type':'function','function':{'name':'get'}},'parallel_tool_calls':false,"
             "'response_format':{'type':'json_schema','json_schema':{'name':'out','schema':{'type':'object'},'strict':true}},"
             "'reasoning_effort':'high'}");
    static const char *const choices[] = {"auto", "none", "required"};
    for (size_t i = 0; i < 3; i++) {
        char body[256], want[256];
        snprintf(body, sizeof body, "{'model':'m','input':'x','tools':[{'type':'function','name':'f'}],'tool_choice':'%s'}", choices[i]);
        snprintf(want, sizeof want, "{'model':'m','messages':[{'role':'user','content':'x'}],"
                 "'tools':[{'type':'function','function':{'name':'f'}}],'tool_choice':'%s'}", choices[i]);
        begin_ok(body, NULL, want);
    }
    begin_ok("{'model':'m','input':'x','text':{'format':{'type':'json_object'}}}", NULL,
             "{'model':'m','messages':[{'role':'user','content':'x'}],'response_format':{'type':'json_object'}}");
    begin_ok("{'model':'m','input':'x','text':{'format':{'type':'text'}},'tools':[],'parallel_tool_calls':true}", NULL,
             "{'model':'m','messages':[{'role':'user','content':'x'}]}");
}

static void test_begin_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *body, *param;
    } cases[] = {
        {"{'model':'m','input':5}", "input"},
        {"{'model':'m'}", "input"},
        {"{'model':'m','instructions':'only'}", "input"},
        {"{'model':'m','input':[]}", "input"},
        {"{'model':'m','input':'x','instructions':5}", "instructions"},
        {"{'model':'m','input':'x','background':true}", "background"},
        {"{'model':'m','input':[5]}", "input[0]"},
        {"{'model':'m','input':[{'content':'x'}]}", "input[0].type"},
        {"{'model':'m','input':[{'type':'message','content':'x'}]}", "input[0].role"},
        {"{'model':'m','input':[{'role':'tool','content':'x'}]}", "input[0].role"},
        {"{'model':'m','input':[{'role':'user','content':5}]}", "input[0].content"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_image','file_id':'file_1'}]}]}", "input[0].content[0]"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_file','file_data':'xx'}]}]}", "input[0].content[0]"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_audio'}]}]}", "input[0].content[0].type"},
        {"{'model':'m','input':[{'role':'system','content':[{'type':'input_image','image_url':'u'}]}]}", "input[0].content[0].type"},
        {"{'model':'m','input':[{'role':'user','content':[{'type':'input_text'}]}]}", "input[0].content[0]"},
        {"{'model':'m','input':['x',{'type':'item_reference','id':'msg_1'}]}", "input[0]"},
        {"{'model':'m','input':[{'role':'user','content':'x'},{'type':'item_reference','id':'msg_1'}]}", "input[1].id"},
        {"{'model':'m','input':[{'role':'user','content':'x'},{'type':'item_reference'}]}", "input[1].id"},
        {"{'model':'m','input':[{'type':'web_search_call','id':'ws'}]}", "input[0].type"},
        {"{'model':'m','input':[{'type':7}]}", "input[0].type"},
        {"{'model':'m','input':[{'type':'function_call','name':'f'}]}", "input[0]"},
        {"{'model':'m','input':[{'type':'function_call','call_id':'c','name':'f','arguments':{}}]}", "input[0]"},
        {"{'model':'m','input':[{'type':'function_call_output','output':'x'}]}", "input[0]"},
        {"{'model':'m','input':[{'type':'function_call_output','call_id':'c'}]}", "input[0].output"},
        {"{'model':'m','input':[{'type':'function_call_output','call_id':'c','output':[{'type':'input_image','image_url':'u'}]}]}", "input[0].output"},
        {"{'model':'m','input':'x','tools':{}}", "tools"},
        {"{'model':'m','input':'x','tools':[{'type':'web_search'}]}", "tools[0].type"},
        {"{'model':'m','input':'x','tools':[{'type':'function','name':'f'},{'type':'code_interpreter'}]}", "tools[1].type"},
        {"{'model':'m','input':'x','tools':[{'type':'mcp','server_label':'s'}]}", "tools[0].type"},
        {"{'model':'m','input':'x','tools':[{'name':'f'}]}", "tools[0].type"},
        {"{'model':'m','input':'x','tools':[{'type':'function'}]}", "tools[0].name"},
        {"{'model':'m','input':'x','tool_choice':'sometimes'}", "tool_choice"},
        {"{'model':'m','input':'x','tool_choice':{'type':'web_search'}}", "tool_choice"},
        {"{'model':'m','input':'x','tool_choice':5}", "tool_choice"},
        {"{'model':'m','input':'x','parallel_tool_calls':'yes'}", "parallel_tool_calls"},
        {"{'model':'m','input':'x','text':5}", "text"},
        {"{'model':'m','input':'x','text':{'format':{'type':'xml'}}}", "text.format.type"},
        {"{'model':'m','input':'x','text':{'format':{'type':'json_schema','name':'n'}}}", "text.format.schema"},
        {"{'model':'m','input':'x','reasoning':'high'}", "reasoning"},
        {"{'model':'m','input':'x','reasoning':{'effort':3}}", "reasoning.effort"},
        {"{'model':'m','input':'x','temperature':3}", "temperature"},
        {"{'model':'m','input':'x','top_p':'a'}", "top_p"},
        {"{'model':'m','input':'x','max_output_tokens':0}", "max_output_tokens"},
        {"{'model':'m','input':'x','max_output_tokens':1.5}", "max_output_tokens"},
        {"{'model':'m','input':'x','user':5}", "user"},
        {"{'model':'m','input':'x','metadata':[]}", "metadata"},
        {"{'model':'m','input':'x','stream':1}", "stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) begin_refused(cases[i].body, NULL, cases[i].param, false);
    begin_refused("{'model':", NULL, "", true);
    begin_refused("'text'", NULL, "", true);
    /* A history that cannot be read, or holds what this gateway refuses. */
    begin_refused("{'model':'m','input':'x'}", "{}", "previous_response_id", false);
    begin_refused("{'model':'m','input':'x'}", "[{'type':'computer_call'}]", "history[0].type", false);
}

/* item_reference: resolved in the history, then in the loaded refs. */
static void test_begin_references(void **state)
{
    (void)state;
    const char *body = J("{'model':'m','input':[{'role':'user','content':'hi'},{'type':'item_reference','id':'msg_r1_0'},"
                         "{'type':'function_call','call_id':'c1','name':'w','arguments':'{}'},"
                         "{'type':'function_call_output','call_id':'c1','output':'sunny'},"
                         "{'type':'item_reference','id':'msg_a_b_3'},{'type':'item_reference','id':'msg_r1_0'},"
                         "{'type':'item_reference','id':'nounderscore'},{'type':'item_reference','id':'x_y'},5]}");
    const char **ids;
    size_t n;
    assert_int_equal(responses_referenced(&A, body, strlen(body), &ids, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "resp_r1");
    assert_string_equal(ids[1], "resp_a_b");
    assert_int_equal(responses_referenced(&A, "{", 1, &ids, &n), 0);
    assert_int_equal(n, 0);
    /* The Vercel AI SDK's second step (store on): the earlier text by reference. */
    const char *req = J("{'model':'m','input':[{'role':'user','content':[{'type':'input_text','text':'hi'}]},"
                        "{'type':'item_reference','id':'msg_r1_0'},"
                        "{'type':'function_call','call_id':'c1','name':'w','arguments':'{}'},"
                        "{'type':'function_call_output','call_id':'c1','output':'sunny'}]}");
    const char *refs = J("[[{'type':'message','role':'user','content':'hi'},"
                         "{'id':'msg_r1_0','type':'message','status':'completed','role':'assistant',"
                         "'content':[{'type':'output_text','text':'Checking.','annotations':[]}]}]]");
    char *chat;
    size_t len;
    struct inbound_error e;
    struct responses_ctx *c = responses_begin_refs(&A, req, strlen(req), NULL, 0, refs, strlen(refs), "resp_abc", 1,
                                                   &chat, &len, &e);
    if (!c) fail_msg("refused: %s", e.message);
    assert_json("chat", "{'model':'m','messages':[{'role':'user','content':'hi'},"
                "{'role':'assistant','content':'Checking.','tool_calls':[{'id':'c1','type':'function','function':{'name':'w','arguments':'{}'}}]},"
                "{'role':'tool','content':'sunny','tool_call_id':'c1'}]}", chat, len);
    /* The stored conversation holds the item itself, not the reference. */
    const char *ans = J("{'model':'m','choices':[{'message':{'content':'Sunny.'},'finish_reason':'stop'}]}");
    char *out;
    assert_int_equal(OPS->response_from_openai(&A, c, ans, strlen(ans), &out, &len), 0);
    assert_non_null(strstr(responses_conversation(c, NULL), "Checking."));
    assert_null(strstr(responses_conversation(c, NULL), "item_reference"));
    /* Found in the history; flat refs work too; unknown ids are refused. */
    begin_ok("{'model':'m','input':[{'type':'item_reference','id':'msg_h_0'},{'role':'user','content':'more'}]}",
             "[{'id':'msg_h_0','type':'message','role':'assistant','content':[{'type':'output_text','text':'old'}]}]",
             "{'model':'m','messages':[{'role':'assistant','content':'old'},{'role':'assistant','content':'old'},"
             "{'role':'user','content':'more'}]}");
    const char *flat = J("[{'id':'fc_z_1','type':'function_call','call_id':'c9','name':'f','arguments':'{}'}]");
    req = J("{'model':'m','input':[{'role':'user','content':'q'},{'type':'item_reference','id':'fc_z_1'},"
            "{'type':'function_call_output','call_id':'c9','output':'r'}]}");
    assert_non_null(responses_begin_refs(&A, req, strlen(req), NULL, 0, flat, strlen(flat), "resp_abc", 1, &chat, &len, &e));
    req = J("{'model':'m','input':[{'role':'user','content':'q'},{'type':'item_reference','id':'fc_z_2'}]}");
    assert_null(responses_begin_refs(&A, req, strlen(req), NULL, 0, flat, strlen(flat), "resp_abc", 1, &chat, &len, &e));
    assert_string_equal(e.param, "input[1].id");
    assert_null(responses_begin_refs(&A, req, strlen(req), NULL, 0, "garbage", 7, "resp_abc", 1, &chat, &len, &e));
}

/* ---- whole answers ---- */

static const char *response_ok(struct responses_ctx *c, const char *answer)
{
    const char *ans = J(answer);
    char *out;
    size_t len;
    if (OPS->response_from_openai(&A, c, ans, strlen(ans), &out, &len) != 0) fail_msg("refused %s", ans);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_response_text(void **state)
{
    (void)state;
    struct responses_ctx *c = begin_ok(
        "{'model':'gw-model','instructions':'sys','input':'hi','max_output_tokens':50,'temperature':0.2,"
        "'tools':[{'type':'function','name':'f'}],'tool_choice':'auto','metadata':{'k':'v'},'store':false,'user':'u'}",
        NULL, NULL);
    const char *out = response_ok(c,
        "{'id':'chatcmpl-1','object':'chat.completion','created':1,'model':'real-model',"
        "'choices':[{'index':0,'message':{'role':'assistant','content':'Hello there'},'finish_reason':'stop'}],"
        "'usage':{'prompt_tokens':10,'completion_tokens':3,'total_tokens':13,"
        "'prompt_tokens_details':{'cached_tokens':4},'completion_tokens_details':{'reasoning_tokens':1}},"
        "'x-aiproxy':{'provider':'p1','cost_nanos':5}}");
    assert_json("response",
                "{'id':'resp_abc','object':'response','created_at':1700000000,'status':'completed','background':false,"
                "'error':null,'incomplete_details':null,'instructions':'sys','max_output_tokens':50,'model':'real-model',"
                "'output':[{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','annotations':[],'text':'Hello there'}]}],"
                "'output_text':'Hello there','parallel_tool_calls':true,'previous_response_id':null,"
                "'reasoning':{'effort':null,'summary':null},'store':false,'temperature':0.2,"
                "'text':{'format':{'type':'text'}},'tool_choice':'auto','tools':[{'type':'function','name':'f'}],"
                "'top_p':null,'truncation':'disabled',"
                "'usage':{'input_tokens':10,'input_tokens_details':{'cached_tokens':4},'output_tokens':3,"
                "'output_tokens_details':{'reasoning_tokens':1},'total_tokens':13},"
                "'user':'u','metadata':{'k':'v'},'x-aiproxy':{'provider':'p1','cost_nanos':5}}",
                out, strlen(out));
}

static void test_response_calls(void **state)
{
    (void)state;
    struct responses_ctx *c = begin_ok("{'model':'m','input':'weather?'}", NULL, NULL);
    const char *out = response_ok(c,
        "{'id':'x','model':'m','choices':[{'index':0,'message':{'role':'assistant','content':'Checking.',"
        "'tool_calls':[{'id':'call_1','type':'function','function':{'name':'w','arguments':'{\\'c\\':\\'P\\'}'}},"
        "{'id':'call_2','type':'function','function':{'name':'t','arguments':'{}'}}]},'finish_reason':'tool_calls'}],"
        "'usage':{'prompt_tokens':5,'completion_tokens':7}}");
    json_t *r = fx_parse("response", out, strlen(out));
    assert_string_equal(json_string_value(json_object_get(r, "status")), "completed");
    assert_json("output",
                "[{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','annotations':[],'text':'Checking.'}]},"
                "{'id':'fc_abc_1','type':'function_call','status':'completed','call_id':'call_1','name':'w','arguments':'{\\'c\\':\\'P\\'}'},"
                "{'id':'fc_abc_2','type':'function_call','status':'completed','call_id':'call_2','name':'t','arguments':'{}'}]",
                pj_dump_test(r, "output"), strlen(pj_dump_test(r, "output")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "usage"), "total_tokens")), 12);
    assert_null(json_object_get(r, "x-aiproxy"));
    json_decref(r);
    /* Only tool calls, content null: no message item. */
    c = begin_ok("{'model':'m','input':'x'}", NULL, NULL);
    out = response_ok(c, "{'model':'m','choices':[{'message':{'role':'assistant','content':null,"
                         "'tool_calls':[{'id':'call_9','type':'function','function':{'name':'w','arguments':'{}'}}]},"
                         "'finish_reason':'tool_calls'}]}");
    r = fx_parse("response", out, strlen(out));
    assert_int_equal(json_array_size(json_object_get(r, "output")), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(r, "output"), 0), "id")), "fc_abc_0");
    assert_string_equal(json_string_value(json_object_get(r, "output_text")), "");
    json_decref(r);
}

static void test_response_incomplete(void **state)
{
    (void)state;
    static const struct {
        const char *finish, *reason;
    } cases[] = {{"length", "max_output_tokens"}, {"content_filter", "content_filter"}};
    for (size_t i = 0; i < 2; i++) {
        struct responses_ctx *c = begin_ok("{'model':'m','input':'x','max_output_tokens':3}", NULL, NULL);
        char ans[256];
        snprintf(ans, sizeof ans, "{'model':'m','choices':[{'message':{'role':'assistant','content':'cut'},'finish_reason':'%s'}]}",
                 cases[i].finish);
        const char *out = response_ok(c, ans);
        json_t *r = fx_parse("response", out, strlen(out));
        assert_string_equal(json_string_value(json_object_get(r, "status")), "incomplete");
        assert_string_equal(json_string_value(json_object_get(json_object_get(r, "incomplete_details"), "reason")),
                            cases[i].reason);
        assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(r, "output"), 0), "status")),
                            "incomplete");
        json_decref(r);
        assert_non_null(responses_result(c, NULL));
    }
    /* A refusal is a refusal content part. */
    struct responses_ctx *c = begin_ok("{'model':'m','input':'x'}", NULL, NULL);
    const char *out = response_ok(c, "{'model':'m','choices':[{'message':{'role':'assistant','content':null,'refusal':'I cannot.'},"
                                     "'finish_reason':'stop'}]}");
    json_t *r = fx_parse("response", out, strlen(out));
    assert_json("content", "[{'type':'refusal','refusal':'I cannot.'}]",
                pj_dump_test(json_array_get(json_object_get(r, "output"), 0), "content"),
                strlen(pj_dump_test(json_array_get(json_object_get(r, "output"), 0), "content")));
    json_decref(r);
}

static void test_response_garbage(void **state)
{
    (void)state;
    static const char *const bodies[] = {"", "{}", "{\"choices\":[]}", "{\"choices\":[{\"message\":5}]}", "[1]",
                                         "{\"choices\":5}", "nul"};
    struct responses_ctx *c = begin_ok("{'model':'m','input':'x'}", NULL, NULL);
    char *out;
    size_t len;
    for (size_t i = 0; i < sizeof bodies / sizeof *bodies; i++) {
        assert_int_equal(OPS->response_from_openai(&A, c, bodies[i], strlen(bodies[i]), &out, &len), -1);
        assert_int_equal(OPS->response_from_openai(&A, NULL, bodies[i], strlen(bodies[i]), &out, &len), -1);
    }
    assert_null(responses_result(c, NULL));
    assert_null(responses_conversation(c, NULL));
    /* Odd but translatable: wrong-typed fields are skipped. */
    const char *odd = J("{'choices':[{'message':{'content':5,'tool_calls':[5,{'function':7}]},'finish_reason':9}],'usage':'x','x-aiproxy':3}");
    assert_int_equal(OPS->response_from_openai(&A, NULL, odd, strlen(odd), &out, &len), 0);
    json_decref(fx_parse("odd response", out, len));
    /* Errors are OpenAI's already: the body is used as it is. */
    assert_int_equal(OPS->error_from_openai(&A, 400, "{}", 2, &out, &len), -1);
    assert_string_equal(OPS->name, "responses");
    assert_null(OPS->request_to_openai);
}

/* ---- streams ---- */

struct events {
    char *buf;
    size_t len;
    int emits;
};

static void collect(void *ctx, const char *bytes, size_t len)
{
    struct events *ev = ctx;
    /* Each emit is whole events. */
    assert_true(len > 8 && memcmp(bytes, "event: ", 7) == 0);
    assert_true(bytes[len - 1] == '\n' && bytes[len - 2] == '\n');
    ev->buf = xrealloc(ev->buf, ev->len + len + 1);
    memcpy(ev->buf + ev->len, bytes, len);
    ev->len += len;
    ev->buf[ev->len] = '\0';
    ev->emits++;
}

/* Feeds the chunks (J-quoted; "[DONE]" calls stream_end, "ERROR {...}"
 * stream_error) and returns the events as a JSON array of their data,
 * having checked the framing, that each event's name is its type and
 * the sequence numbers count from 0. */
static json_t *run_stream(struct responses_ctx *c, const char *const *chunks)
{
    void *st = OPS->stream_begin(&A, "req-1", c);
    struct events ev = {0};
    for (size_t i = 0; chunks[i]; i++) {
        const char *ch = J(chunks[i]);
        if (strcmp(ch, "[DONE]") == 0) OPS->stream_end(st, collect, &ev);
        else if (strncmp(ch, "ERROR ", 6) == 0) OPS->stream_error(st, ch + 6, strlen(ch + 6), collect, &ev);
        else OPS->stream_chunk(st, ch, strlen(ch), collect, &ev);
    }
    json_t *list = json_array();
    char *p = ev.buf;
    int64_t seq = 0;
    while (p && *p) {
        assert_true(strncmp(p, "event: ", 7) == 0);
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char *name = arena_strndup(&A, p + 7, (size_t)(nl - p - 7));
        assert_true(strncmp(nl + 1, "data: ", 6) == 0);
        char *data = nl + 7;
        char *end = strstr(data, "\n\n");
        assert_non_null(end);
        json_t *d = fx_parse("event data", data, (size_t)(end - data));
        assert_string_equal(json_string_value(json_object_get(d, "type")), name);
        assert_int_equal(json_integer_value(json_object_get(d, "sequence_number")), seq);
        seq++;
        json_array_append_new(list, d);
        p = end + 2;
    }
    free(ev.buf);
    return list;
}

static void assert_types(const json_t *events, const char *const *want)
{
    size_t i;
    for (i = 0; want[i]; i++) {
        json_t *d = json_array_get(events, i);
        if (!d) fail_msg("event %zu missing (want %s)", i, want[i]);
        const char *t = json_string_value(json_object_get(d, "type"));
        if (strcmp(t, want[i]) != 0) fail_msg("event %zu: %s, want %s", i, t, want[i]);
    }
    if (json_array_size(events) != i) fail_msg("%zu events, want %zu", json_array_size(events), i);
}

static json_t *ev_at(const json_t *events, size_t i)
{
    return json_array_get(events, i);
}

static const char *ev_str(const json_t *events, size_t i, const char *key)
{
    return json_string_value(json_object_get(ev_at(events, i), key));
}

static int64_t ev_int(const json_t *events, size_t i, const char *key)
{
    return json_integer_value(json_object_get(ev_at(events, i), key));
}

#define CHUNK(delta, finish) "{'id':'c','object':'chat.completion.chunk','created':1,'model':'real',"  \
                             "'choices':[{'index':0,'delta':" delta ",'finish_reason':" finish "}]}"
#define USAGE "{'id':'c','object':'chat.completion.chunk','created':1,'model':'real','choices':[]," \
              "'usage':{'prompt_tokens':9,'completion_tokens':4,'total_tokens':13," \
              "'prompt_tokens_details':{'cached_tokens':2}},'x-aiproxy':{'provider':'p1'}}"

static void test_stream_text(void **state)
{
    (void)state;
    struct responses_ctx *c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks[] = {
        CHUNK("{'role':'assistant','content':''}", "null"), CHUNK("{'content':'Hel'}", "null"),
        CHUNK("{'content':'lo'}", "null"), CHUNK("{}", "'stop'"), USAGE, "[DONE]", "[DONE]", NULL};
    json_t *ev = run_stream(c, chunks);
    static const char *const want[] = {
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed", NULL};
    assert_types(ev, want);
    json_t *created = json_object_get(ev_at(ev, 0), "response");
    assert_string_equal(json_string_value(json_object_get(created, "status")), "in_progress");
    assert_string_equal(json_string_value(json_object_get(created, "id")), "resp_abc");
    assert_string_equal(json_string_value(json_object_get(created, "model")), "real");
    assert_int_equal(json_array_size(json_object_get(created, "output")), 0);
    assert_json("item added", "{'id':'msg_abc_0','type':'message','status':'in_progress','role':'assistant','content':[]}",
                pj_dump_test(ev_at(ev, 2), "item"), strlen(pj_dump_test(ev_at(ev, 2), "item")));
    assert_int_equal(ev_int(ev, 2, "output_index"), 0);
    assert_json("part", "{'type':'output_text','annotations':[],'text':''}", pj_dump_test(ev_at(ev, 3), "part"),
                strlen(pj_dump_test(ev_at(ev, 3), "part")));
    assert_string_equal(ev_str(ev, 4, "delta"), "Hel");
    assert_string_equal(ev_str(ev, 4, "item_id"), "msg_abc_0");
    assert_int_equal(ev_int(ev, 4, "content_index"), 0);
    assert_string_equal(ev_str(ev, 6, "text"), "Hello");
    json_t *r = json_object_get(ev_at(ev, 9), "response");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "completed");
    assert_string_equal(json_string_value(json_object_get(r, "output_text")), "Hello");
    assert_json("usage", "{'input_tokens':9,'input_tokens_details':{'cached_tokens':2},'output_tokens':4,"
                "'output_tokens_details':{'reasoning_tokens':0},'total_tokens':13}",
                pj_dump_test(r, "usage"), strlen(pj_dump_test(r, "usage")));
    assert_json("x-aiproxy", "{'provider':'p1'}", pj_dump_test(r, "x-aiproxy"), strlen(pj_dump_test(r, "x-aiproxy")));
    assert_json("output", "[{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'output_text','annotations':[],'text':'Hello'}]}]",
                pj_dump_test(r, "output"), strlen(pj_dump_test(r, "output")));
    /* The stored result is the Response just sent, and the conversation grew. */
    size_t len;
    const char *res = responses_result(c, &len);
    assert_non_null(res);
    json_t *stored = fx_parse("result", res, len);
    assert_true(json_equal(stored, r));
    json_decref(stored);
    assert_non_null(strstr(responses_conversation(c, NULL), "Hello"));
    json_decref(ev);
}

static void test_stream_calls(void **state)
{
    (void)state;
    struct responses_ctx *c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks[] = {
        CHUNK("{'role':'assistant','tool_calls':[{'index':0,'id':'call_1','type':'function','function':{'name':'w','arguments':''}}]}", "null"),
        CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'{\\'a\\''}}]}", "null"),
        CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':':1}'}}]}", "null"),
        CHUNK("{'tool_calls':[{'index':1,'id':'call_2','type':'function','function':{'name':'t','arguments':'{}'}}]}", "null"),
        CHUNK("{}", "'tool_calls'"), USAGE, "[DONE]", NULL};
    json_t *ev = run_stream(c, chunks);
    static const char *const want[] = {
        "response.created", "response.in_progress",
        "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed", NULL};
    assert_types(ev, want);
    assert_json("added", "{'id':'fc_abc_0','type':'function_call','status':'in_progress','call_id':'call_1','name':'w','arguments':''}",
                pj_dump_test(ev_at(ev, 2), "item"), strlen(pj_dump_test(ev_at(ev, 2), "item")));
    assert_string_equal(ev_str(ev, 3, "item_id"), "fc_abc_0");
    assert_string_equal(ev_str(ev, 5, "arguments"), "{\"a\":1}");
    assert_int_equal(ev_int(ev, 7, "output_index"), 1);
    json_t *r = json_object_get(ev_at(ev, 11), "response");
    assert_json("output", "[{'id':'fc_abc_0','type':'function_call','status':'completed','call_id':'call_1','name':'w','arguments':'{\\'a\\':1}'},"
                "{'id':'fc_abc_1','type':'function_call','status':'completed','call_id':'call_2','name':'t','arguments':'{}'}]",
                pj_dump_test(r, "output"), strlen(pj_dump_test(r, "output")));
    assert_string_equal(json_string_value(json_object_get(r, "output_text")), "");
    json_decref(ev);
}

static void test_stream_text_then_call(void **state)
{
    (void)state;
    struct responses_ctx *c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks[] = {
        CHUNK("{'content':'Let me check.'}", "null"),
        CHUNK("{'tool_calls':[{'index':0,'id':'call_1','function':{'name':'w','arguments':'{}'}}]}", "null"),
        CHUNK("{'content':'And more.'}", "null"),
        CHUNK("{}", "'tool_calls'"), USAGE, "[DONE]", NULL};
    json_t *ev = run_stream(c, chunks);
    static const char *const want[] = {
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed", NULL};
    assert_types(ev, want);
    json_t *r = json_object_get(ev_at(ev, 18), "response");
    json_t *out = json_object_get(r, "output");
    assert_int_equal(json_array_size(out), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 0), "id")), "msg_abc_0");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "id")), "fc_abc_1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(out, 2), "id")), "msg_abc_2");
    assert_string_equal(json_string_value(json_object_get(r, "output_text")), "Let me check.And more.");
    json_decref(ev);
}

static void test_stream_length(void **state)
{
    (void)state;
    struct responses_ctx *c = begin_ok("{'model':'gw','input':'hi','stream':true,'max_output_tokens':2}", NULL, NULL);
    static const char *const chunks[] = {CHUNK("{'content':'Hi'}", "null"), CHUNK("{}", "'length'"), USAGE, "[DONE]", NULL};
    json_t *ev = run_stream(c, chunks);
    static const char *const want[] = {
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.incomplete", NULL};
    assert_types(ev, want);
    json_t *r = json_object_get(ev_at(ev, 8), "response");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "incomplete");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "incomplete_details"), "reason")),
                        "max_output_tokens");
    assert_int_equal(json_integer_value(json_object_get(r, "max_output_tokens")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev_at(ev, 7), "item"), "status")), "incomplete");
    assert_non_null(responses_result(c, NULL));
    json_decref(ev);
}

static void test_stream_failure(void **state)
{
    (void)state;
    struct responses_ctx *c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks[] = {
        CHUNK("{'content':'Hi'}", "null"),
        "ERROR {'error':{'message':'upstream died','type':'server_error','code':'upstream_error'}}",
        CHUNK("{'content':'late'}", "null"), "[DONE]", NULL};
    json_t *ev = run_stream(c, chunks);
    static const char *const want[] = {
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.failed", NULL};
    assert_types(ev, want);
    json_t *r = json_object_get(ev_at(ev, 5), "response");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "failed");
    assert_json("error", "{'code':'upstream_error','message':'upstream died'}", pj_dump_test(r, "error"),
                strlen(pj_dump_test(r, "error")));
    assert_null(responses_result(c, NULL));
    assert_null(responses_conversation(c, NULL));
    json_decref(ev);
    /* An error chunk inside the stream, before any content; an error without code. */
    c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks2[] = {"{'error':{'message':'quota','type':'rate_limit_error'}}", "[DONE]", NULL};
    ev = run_stream(c, chunks2);
    static const char *const want2[] = {"response.created", "response.in_progress", "response.failed", NULL};
    assert_types(ev, want2);
    assert_json("error", "{'code':'rate_limit_error','message':'quota'}",
                pj_dump_test(json_object_get(ev_at(ev, 2), "response"), "error"),
                strlen(pj_dump_test(json_object_get(ev_at(ev, 2), "response"), "error")));
    json_decref(ev);
    c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks3[] = {"ERROR garbage", NULL};
    ev = run_stream(c, chunks3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(ev_at(ev, 2), "response"), "error"), "code")),
                        "server_error");
    json_decref(ev);
}

static void test_stream_odd(void **state)
{
    (void)state;
    /* Nothing but garbage, then the end: a well-formed empty response. */
    struct responses_ctx *c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks[] = {"not json", "[1,2]", CHUNK("5", "7"),
                                         CHUNK("{'tool_calls':[5,{'index':'x'}],'content':3}", "null"), "[DONE]", NULL};
    json_t *ev = run_stream(c, chunks);
    assert_true(json_array_size(ev) >= 3);
    assert_string_equal(ev_str(ev, 0, "type"), "response.created");
    assert_string_equal(ev_str(ev, json_array_size(ev) - 1, "type"), "response.completed");
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev_at(ev, 0), "response"), "model")), "real");
    json_decref(ev);
    /* No context at all (defensive): still a well-formed stream. */
    static const char *const chunks2[] = {CHUNK("{'content':'x'}", "'stop'"), "[DONE]", NULL};
    ev = run_stream(NULL, chunks2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ev_at(ev, 0), "response"), "id")), "resp_req-1");
    json_decref(ev);
    /* A refusal streams as a refusal part; a tool call arriving for one
     * already closed is dropped, not reopened. */
    c = begin_ok("{'model':'gw','input':'hi','stream':true}", NULL, NULL);
    static const char *const chunks3[] = {
        CHUNK("{'refusal':'No'}", "null"),
        CHUNK("{'tool_calls':[{'index':0,'id':'a','function':{'name':'f','arguments':'{}'}}]}", "null"),
        CHUNK("{'tool_calls':[{'index':1,'id':'b','function':{'name':'g','arguments':'{}'}}]}", "null"),
        CHUNK("{'tool_calls':[{'index':0,'function':{'arguments':'late'}}]}", "null"),
        CHUNK("{}", "'stop'"), "[DONE]", NULL};
    ev = run_stream(c, chunks3);
    assert_string_equal(ev_str(ev, 4, "type"), "response.refusal.delta");
    assert_string_equal(ev_str(ev, 5, "type"), "response.refusal.done");
    json_t *r = json_object_get(ev_at(ev, json_array_size(ev) - 1), "response");
    assert_json("output", "[{'id':'msg_abc_0','type':'message','status':'completed','role':'assistant',"
                "'content':[{'type':'refusal','refusal':'No'}]},"
                "{'id':'fc_abc_1','type':'function_call','status':'completed','arguments':'{}','call_id':'a','name':'f'},"
                "{'id':'fc_abc_2','type':'function_call','status':'completed','arguments':'{}','call_id':'b','name':'g'}]",
                pj_dump_test(r, "output"), strlen(pj_dump_test(r, "output")));
    json_decref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_string_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_items, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_tools_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_begin_references, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_incomplete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_response_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_calls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_text_then_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_odd, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
