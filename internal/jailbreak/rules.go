package jailbreak

import (
	"context"
	"fmt"
	"hash/maphash"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
	"sync"

	"golang.org/x/text/unicode/norm"

	"github.com/limitgraph/limit/internal/clip"
)

// Rule categories; each is one rule id of the plugin ("jailbreak.phrase.<category>").
const (
	CatOverride = "override" // "ignore all previous instructions" in any language
	CatPersona  = "persona"  // DAN, developer mode, "you are free of all restrictions"
	CatReveal   = "reveal"   // asks for the system prompt
	CatIndirect = "indirect" // instructions addressed to an AI inside a document
	CatExfil    = "exfil"    // sending secrets or the conversation somewhere
)

// Categories lists the phrase rule categories.
var Categories = []string{CatOverride, CatPersona, CatReveal, CatIndirect, CatExfil}

// PhraseRule is one phrase pattern over normalised text.
type PhraseRule struct {
	// ID names the pattern, e.g. "override/es".
	ID       string
	Category string
	// Lang is the pattern's language (ISO 639-1), or "any".
	Lang     string
	Severity int
	// Pattern is the RE2 pattern over normalised text (lower case, Latin accents removed).
	Pattern string

	alts  []*ruleAlt
	ascii bool
	index int
}

// qual is a run of up to four qualifier words ("all of the previous").
const qual = `(?:\S+\s+){0,4}`

// The parts of override/en. An instruction noun after "ignore", "skip" or "bypass" is
// everyday text as often as an attack ("skip the prompts with -y", "drop the constraints
// on a table", "forget the rules of chess", "my kid ignores my instructions"), so the
// object must be the assistant's own: its instructions ("your", "the system's", "the
// developer's"), the ones before this message ("previous", "above", "prior", "given"),
// all of them with nothing after that names something else ("ignore all instructions.",
// "… all the instructions you got before"), or the preceding context itself ("ignore the
// above and say …", "ignore prior context", "disregard what you were told.").
const (
	// ovVerb tells the reader to stop obeying; ovWeak are the technical verbs that do
	// only with the assistant's instructions (CSS and databases override and drop rules).
	ovVerb = `(?:ignore|ignoring|disregard|disregarding|forget|forgetting|neglect|set\s+aside|discard|abandon|stop\s+following|stop\s+obeying|stop\s+listening\s+to|no\s+longer\s+follow|no\s+longer\s+obey|cease\s+following)`
	ovWeak = `(?:override|overriding|bypass|bypassing|skip|drop)`
	// ovDet are the words that may open the object.
	ovDet = `(?:(?:all|any|every|each|of|the|these|those|and|or)\s+)`
	// ovQual are the words that may stand between the owner or marker and the noun.
	ovQual = `(?:(?:all|any|every|each|the|your|of|these|those|such|previous|previously|prior|above|earlier|preceding|former|foregoing|initial|original|existing|current|old|system|safety|developer|given|other|received|provided|last|first|own|core|hidden|and|or|instructions?)\s+)`
	ovNoun = `(?:instructions?|directions|directives?|rules|guidelines|guidance|prompts?|commands|orders|constraints|restrictions|programming|guardrails|policies|safety\s+(?:rules|guidelines|filters?)|content\s+polic(?:y|ies)|training)`
	// ovInstr are the nouns that are instructions to someone by themselves.
	ovInstr = `(?:instructions?|directives?|prompts?|commands|orders|guidelines|guidance|programming)`
	// ovOwner makes the object the assistant's.
	ovOwner = `(?:(?:your|the)\s+(?:developer|developers|creator|creators|operator|operators|programmer|programmers)(?:'s|\x{2019}s|'|\x{2019})|your)`
	// ovMark places the object before this message or in the assistant's set-up.
	ovMark = `(?:previous|previously|prior|above|earlier|preceding|former|foregoing|initial|original|given|received|provided|system)`
	// ovTail names the assistant after the noun: "… you got before", "… given to you",
	// "… above", "… in your prompt".
	ovTail = `(?:\s+(?:(?:that|which)\s+)?(?:you|u)(?:'ve|\x{2019}ve|\s+have|\s+had|\s+were|\s+got)?\s+(?:been\s+)?(?:got|gotten|received|given|told|fed|provided)\b|\s+(?:(?:that|which|what)\s+(?:were|was|have\s+been|has\s+been|are|is)\s+)?(?:given|give|provided|sent|fed)\s+to\s+(?:you|u)\b|\s+(?:from\s+)?(?:before|above|earlier|previously|so\s+far|until\s+now|till\s+now|up\s+to\s+now)\b|\s+(?:in|from|of)\s+(?:your|the\s+system\s+(?:prompt|message))\b)`
	// ovEnd closes the object: nothing after it says whose instructions they are.
	ovEnd = `(?:\s*(?:[.,;:!)]|$)|\s+and\b)`
	// ovNext is what an attack asks for after dismissing the preceding text.
	ovNext = `(?:\s*[.!]?\s*$|\s*[.,;:!-]*\s*(?:(?:and|then|instead|now|just)\s+)*(?:say|says|print|write|output|respond|reply|answer|tell|repeat|translate|return|only|do|follow|act|pretend|you|from\s+now|instead)\b)`

	overrideEN = `(?:\b(?:` + ovVerb + `|` + ovWeak + `)\s+` + ovDet + `{0,3}` + ovOwner + `\s+` + ovQual + `{0,4}(?:` + ovNoun + `|system\s+(?:message|prompt)s?)\b` +
		`|\b` + ovVerb + `\s+` + ovDet + `{0,3}(?:` + ovMark + `\s+` + ovQual + `{0,4}(?:` + ovNoun + `|context|conversation|chat(?:\s+history)?|dialog(?:ue)?|turns)|system\s+messages?|system(?:'s|\x{2019}s)\s+` + ovQual + `{0,3}` + ovNoun + `)\b` +
		`|\b(?:override|overriding|bypass|bypassing)\s+` + ovDet + `{0,3}` + ovMark + `\s+` + ovQual + `{0,3}` + ovInstr + `\b` +
		`|\b` + ovVerb + `\s+(?:all|any|every)\s+(?:of\s+)?(?:(?:the|these|those|such|other)\s+)?` + ovInstr + `(?:\s*(?:,|and|or|&)\s*` + ovNoun + `)?` + ovEnd +
		`|\b` + ovVerb + `\s+` + ovDet + `{1,3}` + ovQual + `{0,2}` + ovNoun + `(?:\s*(?:,|and|or|&)\s*` + ovNoun + `)?` + ovTail +
		`|\b(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?|everything\s+)?(?:the\s+)?(?:above|foregoing|preceding)(?:\s+(?:text|content|context|input|conversation|prompt|instructions?))?` + ovNext +
		`|\b(?:ignore|disregard|forget)\s+(?:everything\s+|all\s+|anything\s+)?(?:that\s+|what\s+|whatever\s+)(?:you(?:'ve|\x{2019}ve|'re|\x{2019}re|\s+have|\s+were|\s+had)?|u)\s+(?:been\s+|just\s+|previously\s+|earlier\s+)*(?:told|instructed|programmed)(?:\s+(?:before|earlier|previously|so\s+far|until\s+now|to\s+do))?` + ovEnd + `)`
)

// ovLang holds the words of one language's override rule (see overridePattern).
type ovLang struct {
	// verbs tell the reader to ignore or forget; dets are the words that may open the
	// object ("all", "the", "your"); nouns the instruction nouns.
	verbs, dets, nouns string
	// own are the possessives that make the object the assistant's ("your"); all the
	// quantifiers ("all") that do when nothing follows the noun; before and after the
	// words that place the instructions before this message or in the assistant's set-up
	// ("previous", "above", "of the system", "you were given"), before or after the noun.
	own, all, before, after string
	// and are the conjunctions that may follow the object ("and").
	and string
}

// overridePattern builds an override rule from a language's words. As in English, an
// instruction noun after "ignore" or "forget" is everyday text unless the instructions
// are the assistant's: "ignora las instrucciones anteriores del horno" (the oven's) and
// "il ignore les consignes de sécurité" pass, "ignora las instrucciones anteriores y …",
// "oublie tes consignes" and "vergiss alle vorherigen Anweisungen" do not.
func overridePattern(l ovLang) string {
	end := `(?:\s*(?:[.,;:!?)]|$)|\s+(?:` + l.and + `)\b)`
	after := `(?:\s+(?:` + l.after + `)){1,2}`
	return `\b(?:` + l.verbs + `)\s+(?:(?:` + l.dets + `)\s+){0,3}(?:` +
		`(?:` + l.own + `)\s+(?:\S+\s+)?(?:` + l.nouns + `)\b` +
		`|(?:` + l.before + `)\s+(?:\S+\s+)?(?:` + l.nouns + `)\b` +
		`|(?:` + l.all + `)\s+(?:(?:` + l.dets + `)\s+){0,2}(?:` + l.nouns + `)(?:` + after + `)?` + end +
		`|(?:` + l.nouns + `)` + after + end + `)`
}

var (
	overrideES = overridePattern(ovLang{
		verbs: `ignora|ignore|ignorar|ignoren|olvida|olvide|olvidar|olviden|omite|omita|descarta|descarte|desestima|haz\s+caso\s+omiso\s+(?:a|de)`,
		dets:  `las|los|todas|todos|tus|estas|esas|de|a|sus`,
		nouns: `instrucciones|indicaciones|reglas|directrices|ordenes|normas`,
		own:   `tus|vuestras|vuestros`, all: `todas|todos|cualquier`,
		before: `anteriores|previas`,
		after:  `anteriores|previas|de\s+arriba|del\s+sistema|iniciales|originales|recibidas|de\s+antes|que\s+(?:te|se\s+te)\s+(?:dieron|di|dio|han\s+dado|ha\s+dado|dije|dijeron)(?:\s+antes)?|(?:que\s+te\s+(?:dio|dieron|ha\s+dado|han\s+dado)\s+)?(?:el|los|del|de\s+los|tu|tus)\s+(?:desarrollador(?:es)?|creador(?:es)?|programador(?:es)?|operador(?:es)?)|de\s+tu\s+(?:sistema|programacion|desarrollador|prompt)`,
		and:    `y|e|pero`,
	})
	overridePT = overridePattern(ovLang{
		verbs: `ignore|ignora|ignorar|esqueca|esquece|esquecer|desconsidere|desconsidera|descarte|despreze`,
		dets:  `as|os|todas|todos|suas|seus|tuas|teus|essas|estas|das|dos|de|a`,
		nouns: `instrucoes|instrucao|regras|diretrizes|orientacoes|comandos`,
		own:   `suas|seus|tuas|teus`, all: `todas|todos|quaisquer`,
		before: `anteriores|previas`,
		after:  `anteriores|previas|acima|do\s+sistema|iniciais|originais|recebidas|de\s+antes|que\s+(?:te|lhe)\s+(?:deram|dei|foram\s+dadas)|que\s+voce\s+recebeu`,
		and:    `e|mas`,
	})
	overrideFR = overridePattern(ovLang{
		verbs: `ignore|ignorez|ignorer|oublie|oubliez|oublier|neglige|negligez|ne\s+tiens\s+pas\s+compte\s+(?:de|des)|ne\s+tenez\s+pas\s+compte\s+(?:de|des)|fais\s+abstraction\s+(?:de|des)|faites\s+abstraction\s+(?:de|des)`,
		dets:  `les|des|de|toutes|tous|tes|vos|ces|d'|l'`,
		nouns: `instructions|consignes|regles|directives|ordres|indications`,
		own:   `tes|vos`, all: `toutes|tous`,
		before: `precedentes|anciennes`,
		after:  `precedentes|anterieures|ci-dessus|d'avant|du\s+systeme|systeme|initiales|originales|d'origine|recues|(?:qu'on|que\s+l'on)\s+(?:t'a|vous\s+a)\s+donnees|que\s+(?:tu\s+as|vous\s+avez)\s+recues|donnees\s+(?:avant|plus\s+haut|precedemment)`,
		and:    `et|puis`,
	})
	overrideIT = overridePattern(ovLang{
		verbs: `ignora|ignorate|ignorare|ignori|dimentica|dimenticate|dimenticare|trascura|tralascia`,
		dets:  `le|tutte|tutti|queste|tue|sue|delle|di|gli|i`,
		nouns: `istruzioni|regole|indicazioni|direttive|comandi`,
		own:   `tue|tuoi|vostre|vostri`, all: `tutte|tutti|qualsiasi`,
		before: `precedenti`,
		after:  `precedenti|di\s+prima|sopra|del\s+sistema|iniziali|originali|ricevute|che\s+ti\s+(?:hanno\s+dato|sono\s+state\s+date|ho\s+dato)`,
		and:    `e|ed|ma`,
	})
	overrideDE = overridePattern(ovLang{
		verbs: `ignorier(?:e|en|t)?|vergiss|vergesst|vergessen|missachte|missachten|ubergehe|ubergehen`,
		dets:  `alle|die|sie|bitte|einfach|samtliche|jegliche|diese|der|jetzt|nun`,
		nouns: `(?:system|sicherheits)?(?:anweisungen|instruktionen|regeln|richtlinien|befehle|vorgaben|anordnungen)`,
		own:   `deine|eure|ihre`, all: `alle|samtliche|jegliche`,
		before: `vorherigen|vorigen|bisherigen|fruheren|obigen|vorangegangenen|vorhergehenden|ursprunglichen|erhaltenen|gegebenen|alten`,
		after:  `von\s+(?:vorher|oben|zuvor)|(?:im|aus\s+dem)\s+systemprompt|des\s+systems|(?:die|welche)\s+(?:du|man\s+dir)\s+(?:erhalten|bekommen|gegeben)\s+(?:hast|hat)`,
		and:    `und|aber`,
	})
)

// phraseRules are the patterns, compiled by init. They are written against normalised
// text (see Normalize) and are meant to be specific: each names an instruction noun, an
// AI addressee or a jailbreak idiom, so ordinary uses of "ignore" or "forget" pass.
var phraseRules = []*PhraseRule{
	// English.
	{ID: "override/en", Category: CatOverride, Lang: "en", Severity: 8, Pattern: overrideEN},
	{ID: "override-all/en", Category: CatOverride, Lang: "en", Severity: 8,
		Pattern: `\b(?:ignore|disregard|forget)\s+(?:about\s+)?(?:everything|all|anything)\s+(?:(?:that\s+)?(?:was\s+|is\s+|you(?:'ve|\s+have|\s+were)?\s+(?:been\s+)?)?(?:written|said|stated|mentioned|told|taught|instructed|given|learned)\s+)?(?:above|before|previously|prior|so\s+far|until\s+now|earlier|up\s+to\s+(?:now|this\s+point))\b`},
	{ID: "override-new/en", Category: CatOverride, Lang: "en", Severity: 7,
		Pattern: `(?:\bnew\s+system\s+(?:prompt|instructions?)\b|\[\s*(?:system|admin)\s+(?:override|instructions?)\s*\]|\b(?:system|admin|developer)\s+override\b|\byour\s+new\s+(?:\S+\s+)?(?:instructions|task|directive|objective|goal|mission|purpose)\s+(?:is|are)\b)`},
	{ID: "persona-dan/en", Category: CatPersona, Lang: "en", Severity: 8,
		Pattern: `(?:\bdo\s+anything\s+now\b|\b(?:developer|god|jailbreak|jailbroken|dan|unrestricted|unfiltered|evil)(?:\s+mode\s+|\\?_mode(?:\s+|\s*[:=]\s*))(?:is\s+)?(?:enabled|activated|engaged|output|response)\b|\benable\s+(?:dan|jailbreak|god|unrestricted)\s+mode\b|\b(?:you\s+are|you're|act\s+as|become|pretend\s+to\s+be|roleplay\s+as)\s+(?:now\s+)?(?:a\s+|an\s+)?(?:dan|jailbroken|unrestricted\s+ai|unfiltered\s+ai|uncensored\s+ai)\b)`},
	{ID: "persona-unbound/en", Category: CatPersona, Lang: "en", Severity: 7,
		Pattern: `(?:\byou\s+(?:are|will\s+be|shall\s+be|have\s+been|were)?\s*(?:\S+\s+){0,2}(?:not|no\s+longer|never)\s+(?:be\s+)?(?:bound|restricted|limited|constrained|held)\s+by\b|\byou\s+(?:are|have\s+been)\s+(?:now\s+)?(?:freed|free|liberated|released|unchained)\s+(?:from|of)\s+(?:all\s+|any\s+|the\s+)?(?:\S+\s+){0,2}(?:restrictions|confines|limitations|rules|guidelines|filters|censorship|constraints|policies)\b|\b(?:without|no|ignore|ignoring|bypass|bypassing|break|breaking|violate|violating|circumvent)\s+(?:any\s+|all\s+|the\s+)?(?:openai|anthropic|chatgpt|content|safety|ethical|moral)(?:'s)?\s+(?:content\s+)?(?:polic(?:y|ies)|guidelines|filters?|restrictions|rules|limitations))`},
	{ID: "persona-norules/en", Category: CatPersona, Lang: "en", Severity: 7,
		Pattern: `\b(?:pretend|imagine|assume|act\s+as\s+if)\s+(?:that\s+)?(?:the\s+|your\s+|all\s+|any\s+)?(?:rules|guidelines|restrictions|policies|filters|limits|safeguards)\s+(?:do\s+not|don't|no\s+longer|never)\s+(?:apply|exist)\b`},
	// Idioms of persona jailbreaks that lock the model into its role: it may not say it
	// is an AI or refuse. ("Never break character", 79 of the training split's jailbreaks
	// and none of its benign texts, was tried and dropped: benign role-play prompts say it,
	// one of the held-out split's among them.)
	{ID: "persona-notai/en", Category: CatPersona, Lang: "en", Severity: 7,
		Pattern: `\b(?:not\s+allowed\s+to|never|do\s+not|don't|must\s+not|mustn't|will\s+not|won't|no\s+longer|stop)\s+(?:\S+\s+){0,3}?(?:say|saying|mention|mentioning|admit|admitting|remind\S*|respond|responding|reply|replying|act|acting|identify|refer\s+to\s+yourself)\s+(?:\S+\s+){0,3}?(?:(?:that\s+)?(?:you\s+are|you're|you\s+were)|yourself\s+as|as)\s+(?:an?\s+)?(?:ai\s+language\s+model|language\s+model|ai\s+model|large\s+language\s+model|ai\s+assistant|ai)\b`},
	{ID: "persona-norefuse/en", Category: CatPersona, Lang: "en", Severity: 7,
		Pattern: `(?:\b(?:never|do\s+not|don't|must\s+not|will\s+not|won't|cannot|can't|shall\s+not|are\s+not\s+allowed\s+to)\s+(?:ever\s+)?(?:refuse|decline|deny)\s+(?:to\s+(?:answer|respond|reply|comply|do|fulfill|provide|help|generate|write)|(?:a|an|any|my|the\s+user'?s?)\s+(?:single\s+|direct\s+|human\s+|direct\s+human\s+)?(?:request|question|prompt|order|command|instruction)s?|anything)|\b(?:answer|answers|answering|respond\s+to|responds\s+to|reply\s+to)\s+(?:any|every|all)\s+(?:\S+\s+){0,2}?(?:illegal|unethical|immoral|harmful|dangerous|offensive|inappropriate)\s+(?:\S+\s+){0,2}?(?:questions?|requests?|prompts?)|\b(?:answer|answers|answering|respond\s+to|responds\s+to|reply\s+to|provide)\s+(?:any|every|all)\s+(?:questions?|requests?|prompts?|information|answers?)\s+(?:\S+\s+){0,2}?(?:despite|regardless\s+of|no\s+matter)\s+(?:what|how|its|their|the|whether))`},
	// The "grandma" exploit: a dead relative's role unlocks what the model refuses.
	{ID: "persona-grandma/en", Category: CatPersona, Lang: "en", Severity: 7,
		Pattern: `\b(?:act|pretend|roleplay|role-play|play|be)\s+(?:as\s+|to\s+be\s+)?(?:my\s+)?(?:late\s+|deceased\s+|decased\s+|dead\s+|dear\s+)?(?:grandma|grandmother|granny|nana|grandpa|grandfather)\s+(?:who\s+)?(?:used\s+to|would|always)\s+(?:\S+\s+){0,2}?(?:read|tell|recite|sing|whisper)`},
	// Chat-template control tokens that close a turn and open a system turn inside a
	// message: a user's text pretending the conversation's frame ended and a new system
	// prompt began (ChatML, Llama 3, Phi). A template or its documentation opens the
	// system turn first, not after a closed one, and passes.
	{ID: "override-template/any", Category: CatOverride, Lang: "any", Severity: 7,
		Pattern: `(?:<\|im_end\|>|<\|eot_id\|>|<\|end\|>|<end_of_turn>)\s*(?:\\n\s*)*(?:<\|im_start\|>\s*system\b|<\|start_header_id\|>\s*system\b|<\|system\|>)`},
	// The tags of the dual-answer format of DAN prompts ("[🔒CLASSIC] … [🔓JAILBREAK] …",
	// "[GPT]: … [DAN]: …"): the unlocked padlock, or a DAN tag near a classic one. A name
	// in brackets alone ("[Dan] will follow up"), a phone's "[Jailbreak]" or a support
	// transcript's "[AI]: … [Dan]: …" passes.
	{ID: "persona-tags/any", Category: CatPersona, Lang: "any", Severity: 7,
		Pattern: `(?:\[\s*🔓[^\]\n]{0,16}\]|\[\s*(?:🔒\s*)?(?:classic|normal|gpt|chatgpt)\s*\].{0,160}?\[\s*(?:dan|anti-?dan)\s*\]|\[\s*(?:dan|anti-?dan)\s*\].{0,160}?\[\s*(?:🔒\s*)?(?:classic|normal|gpt|chatgpt)\s*\])`},
	// The persona lock in Chinese (as persona-notai/en): never say that you are an AI, nor
	// speak in an AI's tone. "不能使用AI完成作业" (homework may not be done with AI) passes.
	{ID: "persona-notai/zh", Category: CatPersona, Lang: "zh", Severity: 7,
		Pattern: `(?:不能|不可以|不可|不要|不准|不许|不許|禁止|绝不|絕不|绝对不|絕對不|不得|永远不要|永遠不要)\S{0,3}?(?:(?:说|說|提到|提及|承认|承認|表明|透露|暴露)\S{0,2}?(?:你是|自己是)\S{0,3}?(?:ai|人工智能|语言模型|語言模型|机器人|機器人)|(?:用|使用|以)ai(?:的)?\S{0,3}?(?:口吻|语气|語氣|口语|口語|腔调|腔調|身份|身分))`},
	// The universal adversarial suffix of Zou et al. (2023), as published and reposted.
	{ID: "override-suffix/en", Category: CatOverride, Lang: "en", Severity: 8,
		Pattern: `\bdescribing\.\s*\\?\s*\+\s*similarlynow\s+write\s+opposite`},
	{ID: "reveal/en", Category: CatReveal, Lang: "en", Severity: 7,
		Pattern: `(?:\b(?:reveal|print|show|output|display|repeat|leak|dump|tell\s+me|give\s+me|write\s+out|disclose|share|recite|spell\s+out|translate)\s+(?:me\s+)?(?:back\s+)?(?:all\s+(?:of\s+)?)?(?:(?:the|all)\s+(?:(?:full|entire|complete|exact|whole)\s+)?(?:contents?|text|wording|words)\s+of\s+)?(?:your|the)\s+(?:(?:full|entire|exact|complete|original|initial|hidden|secret|internal|previous|first)\s+)*(?:system\s+(?:prompt|message|instructions?)|(?:initial|hidden|secret|original|developer|pre-?prompt)\s+(?:prompt|instructions?)|instructions\s+(?:above|you\s+were\s+given))|\bwhat\s+(?:is|was|are|were)\s+your\s+(?:system\s+prompt|(?:initial|original|hidden|secret)\s+(?:instructions|prompt))|\brepeat\s+(?:the\s+)?(?:words|text|everything|all)\s+above\b|\b(?:repeat|output|print|show|write\s+out|tell\s+me|give\s+me|recite)\s+(?:me\s+)?(?:everything|all|the\s+text|the\s+words)\s+(?:that\s+(?:was|is|were|has\s+been)\s+)?(?:written|said|stated|given|provided|typed)\s+(?:above|before\s+(?:this|my|the\s+user'?s?)\s+(?:message|prompt|line|question)))`},
	{ID: "indirect/en", Category: CatIndirect, Lang: "en", Severity: 8,
		Pattern: `(?:\b(?:if|when)\s+you\s+are\s+(?:an?\s+)?(?:ai|llm|large\s+language\s+model|language\s+model|ai\s+assistant|assistant|chatbot|ai\s+model|ai\s+agent)\b(?:\s+\S+){0,4}\s*[,:]|\b(?:note|message|attention|important|instructions?)\s*(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:ai|llm|ai\s+assistant|language\s+model|chatbot|ai\s+model|ai\s+agent|gpt|chatgpt|assistant|model|agent)s?\s*[:,.!-]|\b(?:any|all|every)\s+(?:ai|llm|assistant|language\s+model|model|agent|bot|chatbot|gpt)s?\s+(?:that\s+(?:is|are)\s+)?(?:reading|processing|summari[sz]ing|parsing|scanning|seeing|reviewing|analy[sz]ing)\s+this\b|\b(?:new\s+instructions?|new\s+directives?|instructions?|directives?|commands?|orders)\s+(?:to|for)\s+(?:the|any|all)\s+(?:assistants?|models?|agents?|bots?)\s*[:,.!-]|\b(?:do\s+not|don't|never)\s+(?:tell|inform|mention\s+(?:this|it)\s+to|alert|notify|reveal\s+(?:this|it)\s+to)\s+the\s+user\b|\bwithout\s+(?:telling|informing|notifying|alerting)\s+the\s+user\b|\b(?:ai|assistant|llm|chatbot|gpt|chatgpt|claude|copilot)s?\s*[:,]\s*(?:please\s+)?(?:ignore|disregard|forget|stop|instead|when\s+(?:you\s+)?(?:summariz|read|process|answer|respond|review|translat|analy[sz])\S*)\b)`},
	// More ways documents address the AI that reads them, and ask it to keep the user
	// uninformed: "Note to the AI assistant processing this inbox:", "AI agents and
	// browsing assistants reading this page", "do not mention this instruction".
	{ID: "indirect-more/en", Category: CatIndirect, Lang: "en", Severity: 8,
		Pattern: `(?:\b(?:note|message|notice|attention|important|instructions?)\s*(?:to|for)\s+(?:the\s+|any\s+|all\s+)?(?:ai|llm|gpt|chatgpt)\s+(?:\S+\s+){0,2}?(?:assistants?|agents?|models?|bots?)(?:\s+(?:processing|reading|summari[sz]ing|parsing|reviewing|handling|analy[sz]ing|editing)(?:\s+\S+){1,4}?)?\s*[:,!-]|\b(?:ai|llm)\s+(?:\S+\s+)?(?:agents?|assistants?|models?)\s+(?:and\s+(?:\S+\s+){1,2})?(?:that\s+(?:are\s+)?)?(?:reading|processing|summari[sz]ing|parsing|reviewing|analy[sz]ing)\s+(?:this|these)\b|\b(?:do\s+not|don't|never|without)\s+(?:mention|mentioning|reveal|revealing|disclose|disclosing)\s+(?:this|these)\s+(?:instructions?|directives?)\s+(?:\S+\s+){0,7}?(?:to|for|with)\s+the\s+(?:user|human|customer|reader)\b|\b(?:do\s+not|don't|never)\s+(?:reveal|mention|disclose|say)\s+that\s+you\s+(?:were|have\s+been)\s+(?:told|instructed|asked)\b)`},
	{ID: "exfil/en", Category: CatExfil, Lang: "en", Severity: 9,
		Pattern: `(?:!\[[^\]\n]*\]\(\s*https?://[^)\s]*(?:\{|\$|%7b|<|\[)|\b(?:send|forward|email|post|upload|transmit|exfiltrate|leak)\s+(?:\S+\s+){0,5}(?:passwords?|credentials|api\s*keys?|secrets?|tokens?|ssh\s+keys?|private\s+keys?|conversation|chat\s+history|system\s+prompt|cookies?)\s+(?:\S+\s+){0,4}to\s+(?:https?://|[\w.+-]+@[\w-]+\.|[\w-]+\.(?:com|net|org|io|ru|xyz|cn|tk)\b))`},

	// Other languages: override, and a few reveal patterns.
	{ID: "override/es", Category: CatOverride, Lang: "es", Severity: 8,
		Pattern: `(?:` + overrideES + `|\bolvida\s+todo\s+lo\s+(?:anterior|que\s+te\s+(?:dije|dijeron|han\s+dicho)))`},
	{ID: "override/pt", Category: CatOverride, Lang: "pt", Severity: 8, Pattern: overridePT},
	{ID: "override/fr", Category: CatOverride, Lang: "fr", Severity: 8,
		Pattern: `(?:` + overrideFR + `|\boublie[zr]?\s+tout\s+ce\s+qu(?:'|e\s+)(?:on|je)\s+(?:t'a|vous\s+a|t'ai|vous\s+ai)\s+dit)`},
	{ID: "override/it", Category: CatOverride, Lang: "it", Severity: 8, Pattern: overrideIT},
	{ID: "override/de", Category: CatOverride, Lang: "de", Severity: 8,
		Pattern: `(?:` + overrideDE + `|\bvergiss\s+(?:bitte\s+|einfach\s+|jetzt\s+|nun\s+)?alles\s*,?\s+was\b)`},
	{ID: "override/nl", Category: CatOverride, Lang: "nl", Severity: 8,
		Pattern: `\b(?:negeer|negeren|vergeet|vergeten|ignoreer)\s+` + qual + `(?:instructies|regels|richtlijnen|opdrachten|aanwijzingen)\b`},
	{ID: "override/pl", Category: CatOverride, Lang: "pl", Severity: 8,
		Pattern: `\b(?:zignoruj|ignoruj|zignorujcie|zapomnij|pomin)\s+` + qual + `(?:instrukcje|instrukcji|polecenia|polecen|zasady|reguly|wytyczne)\b`},
	{ID: "override/tr", Category: CatOverride, Lang: "tr", Severity: 8,
		Pattern: `\b(?:onceki|yukaridaki|tum|butun|verilen)\s+(?:\S+\s+){0,2}(?:talimatlari|talimatlar|talimati|kurallari|komutlari|yonergeleri)\s+(?:\S+\s+)?(?:yok\s+say|gormezden\s+gel|unut|dikkate\s+alma|goz\s*ardi)`},
	{ID: "override/ru", Category: CatOverride, Lang: "ru", Severity: 8,
		Pattern: `(?:(?:игнорируй|игнорируйте|проигнорируй|проигнорируйте|забудь|забудьте|отбрось|отбросьте|пропусти|не\s+обращай\s+внимания\s+на|не\s+обращайте\s+внимания\s+на)\s+` + qual + `(?:инструкции|инструкций|указания|указаний|правила|команды|распоряжения)|забудь(?:те)?\s+всё|забудь(?:те)?\s+все,?\s+что)`},
	{ID: "override/uk", Category: CatOverride, Lang: "uk", Severity: 8,
		Pattern: `(?:ігноруй|ігноруйте|проігноруй|забудь|забудьте)\s+` + qual + `(?:інструкції|інструкцій|вказівки|вказівок|правила|команди)`},
	{ID: "override/zh", Category: CatOverride, Lang: "zh", Severity: 8,
		Pattern: `(?:忽略|无视|無視|忽视|忽視|不要理会|不要理會|忘记|忘記|忘掉|跳过|跳過)(?:掉)?(?:之前|以前|先前|上面|上述|前面|以上|所有|全部|一切|你的|原来|原來|的|[\s,])*(?:指令|指示|说明|說明|规则|規則|提示词|提示|命令|设定|設定|要求|限制)`},
	{ID: "override/ja", Category: CatOverride, Lang: "ja", Severity: 8,
		Pattern: `(?:以前|前|上記|これまで|先ほど|上|最初|元|全て|すべて)の?(?:すべて|全て)?の?(?:指示|命令|指令|ルール|設定|プロンプト|制約)(?:を|は)?(?:すべて|全て)?(?:無視|忘れ|無効|取り消|破棄)`},
	{ID: "override/ko", Category: CatOverride, Lang: "ko", Severity: 8,
		Pattern: `(?:이전|앞의|위의|기존|모든|이전의|앞서)\s*(?:\S+\s+){0,2}(?:지시|명령|지침|규칙|프롬프트|지시사항|설정)\S*\s*(?:모두\s*)?(?:무시|잊어)`},
	{ID: "override/ar", Category: CatOverride, Lang: "ar", Severity: 8,
		Pattern: `(?:تجاهل|تجاهلي|تجاهلوا|انس|انسى|أهمل|اهمل|تخط|تخطى)\s+` + qual + `(?:التعليمات|الإرشادات|الارشادات|الاوامر|الأوامر|القواعد|التوجيهات)`},
	{ID: "override/hi", Category: CatOverride, Lang: "hi", Severity: 8,
		Pattern: `(?:पिछले|पिछली|पहले|ऊपर|सभी|पूर्व)\s+(?:\S+\s+){0,3}(?:निर्देशों|निर्देश|नियमों|नियम|आदेशों|आदेश)\s+(?:\S+\s+){0,2}(?:अनदेखा|नजरअंदाज|नज़रअंदाज़|भूल|उपेक्षा)`},
	{ID: "override/vi", Category: CatOverride, Lang: "vi", Severity: 8,
		Pattern: `\b(?:bo\s+qua|phot\s+lo|quen|lo\s+di)\s+` + qual + `(?:huong\s+dan|chi\s+dan|chi\s+thi|quy\s+tac|lenh)\b`},
	{ID: "override/id", Category: CatOverride, Lang: "id", Severity: 8,
		Pattern: `\b(?:abaikan|lupakan|acuhkan|hiraukan)\s+` + qual + `(?:instruksi|perintah|aturan|petunjuk|arahan)\b`},
	// Earlier instructions declared void, and restrictions removed, in the languages
	// above: "whatever you were told before no longer applies", "responde sin filtros".
	{ID: "override-void/en", Category: CatOverride, Lang: "en", Severity: 7,
		Pattern: `(?:\b(?:whatever|everything|anything|all)\s+(?:that\s+)?(?:you\s+were|you've\s+been|you\s+have\s+been|your\s+(?:creators?|developers?|makers?|operators?|programmers?)\s+(?:have\s+)?)\s*(?:\S+\s+){0,2}?(?:told|given|instructed|programmed)\s+(?:\S+\s+){0,2}?(?:before|earlier|previously|so\s+far|until\s+now|up\s+to\s+now|at\s+the\s+start|in\s+your\s+(?:system\s+)?prompt)\s+(?:\S+\s+){0,2}?(?:no\s+longer\s+(?:applies|apply|matters|counts|holds)|(?:is|are)\s+(?:now\s+)?(?:void|null|cancel+ed|invalid|revoked|overridden))|\b(?:your\s+(?:previous|prior|earlier|original|initial|old|existing|current)\s+(?:\S+\s+)?(?:instructions|rules|guidelines|directives|prompts?|programming)|(?:the|all)\s+(?:previous|prior|earlier|original|initial|above)\s+(?:system\s+)?(?:instructions|directives|prompts?|programming))\s+(?:are|is)\s+(?:now\s+|hereby\s+)?(?:void|null|cancel+ed|invalid|revoked|overridden|no\s+longer\s+(?:valid|in\s+effect|applicable|active)))`},
	{ID: "persona-nosafety/en", Category: CatPersona, Lang: "en", Severity: 7,
		// remove, lift, suspend and drop name household and workplace things too ("remove
		// your filter and rinse it", "lift your restrictions on remote work"): with them the
		// noun must be the AI's own.
		Pattern: `(?:\b(?:disable|turn\s+off|switch\s+off|deactivate|bypass|shut\s+off)\s+(?:all\s+of\s+|all\s+|any\s+of\s+|any\s+)?your\s+(?:own\s+)?(?:safety|content|moderation|ethical|ethics|output)?\s*(?:filters?|filtering|guardrails|safeguards|restrictions|limitations|censorship|moderation|safety\s+(?:features|checks|protocols|settings|mode|rules|guidelines))\b|\b(?:remove|lift|suspend|drop)\s+(?:all\s+of\s+|all\s+|any\s+of\s+|any\s+)?your\s+(?:own\s+)?(?:(?:safety|content|moderation|ethical|ethics|output)\s*(?:filters?|filtering|guardrails|safeguards|restrictions|limitations|censorship|moderation)|guardrails|safeguards|censorship|safety\s+(?:features|checks|protocols|settings|mode|rules|guidelines))\b)`},
	{ID: "reveal-config/en", Category: CatReveal, Lang: "en", Severity: 7,
		Pattern: `(?:\b(?:paste|quote|print|output|reproduce|dump|show|reveal|recite|repeat|list|write\s+out)\s+(?:me\s+)?(?:the\s+|your\s+)?(?:(?:exact|full|complete|verbatim|entire|original|raw|hidden)\s+)+(?:text|wording|contents?)\s+of\s+(?:the\s+|your\s+)?(?:instructions|prompt|directives|rules|guidelines)\s+(?:you\s+(?:were|have\s+been)\s+given|you\s+(?:received|got)|given\s+to\s+you|you\s+started\s+with)|\b(?:list|show|print|reveal|dump|output|enumerate|display)\s+(?:me\s+)?(?:all\s+|the\s+|your\s+)*(?:(?:hidden|internal|secret|private)\s+)?(?:configuration|config|tool\s+definitions|function\s+definitions|api\s+keys|credentials|secrets|environment\s+variables)\s+(?:\S+\s+){0,5}?(?:in|into)\s+your\s+(?:context|memory|prompt|system\s+prompt|context\s+window))`},
	{ID: "persona-unbound/es", Category: CatPersona, Lang: "es", Severity: 7,
		Pattern: `\b(?:eres|actuas|actua|actuaras|responde|respondes|responderas|funcionas|operas|seras)\s+(?:\S+\s+){0,4}sin\s+(?:ninguna\s+|ningun\s+|las\s+|tus\s+|ningun\s+tipo\s+de\s+|ninguna\s+de\s+las\s+)?(?:restricci?ones|restriccion|filtros?|censura|reglas?)`},
	{ID: "persona-unbound/fr", Category: CatPersona, Lang: "fr", Severity: 7,
		Pattern: `\b(?:tu\s+es|vous\s+etes|reponds|repondez|agis|agissez|fonctionnes|fonctionnez|tu\s+reponds|tu\s+agis)\s+(?:\S+\s+){0,4}sans\s+(?:aucune?\s+|tes\s+|vos\s+|les\s+)?(?:restrictions?|filtres?|censure|regles)`},
	{ID: "persona-unbound/de", Category: CatPersona, Lang: "de", Severity: 7,
		Pattern: `\b(?:du\s+bist|antworte|antwortest|agiere|agierst|handle|handelst|arbeite|arbeitest)\s+(?:\S+\s+){0,4}ohne\s+(?:jegliche\s+|irgendwelche\s+|alle\s+|deine\s+|jede\s+)?(?:einschrankungen|einschrankung|filter|sicherheitsfilter|zensur|regeln|beschrankungen|beschrankung|sicherheitsvorkehrungen|richtlinien)`},
	{ID: "persona-unbound/pt", Category: CatPersona, Lang: "pt", Severity: 7,
		Pattern: `\b(?:voce\s+e|voce\s+esta|voce\s+agora\s+e|responda|responde|aja|atue|funcione|voce\s+vai\s+responder)\s+(?:\S+\s+){0,4}sem\s+(?:nenhuma\s+|nenhum\s+|quaisquer\s+|as\s+|suas\s+|qualquer\s+)?(?:restricoes|restricao|filtros|filtro|censura|regras)`},
	{ID: "persona-unbound/it", Category: CatPersona, Lang: "it", Severity: 7,
		Pattern: `\b(?:sei|rispondi|agisci|funzioni|opera|operi|risponderai|agirai)\s+(?:\S+\s+){0,4}senza\s+(?:alcuna\s+|alcun\s+|le\s+|tue\s+|nessuna\s+|nessun\s+)?(?:restrizioni|restrizione|filtri|filtro|censura|regole|regola)`},
	{ID: "persona-unbound/ru", Category: CatPersona, Lang: "ru", Severity: 7,
		Pattern: `(?:ты|отвечай|отвечайте|действуй|действуйте)\s+(?:\S+\s+){0,4}без\s+(?:каких-либо\s+|всяких\s+|любых\s+|каких\s+либо\s+)?(?:ограничений|фильтров|цензуры|правил)`},
	{ID: "persona-unbound/zh", Category: CatPersona, Lang: "zh", Severity: 7,
		Pattern: `(?:你|您)(?:现在|現在|从现在开始|從現在開始)?(?:是|将|將|要|会|會)?\S{0,8}?(?:不受任何|没有任何|沒有任何)(?:的)?(?:限制|约束|約束|过滤|過濾|审查|審查)`},
	{ID: "override-void/multi", Category: CatOverride, Lang: "any", Severity: 8,
		Pattern: `(?:(?:之前|以前|先前|上面|上述|原来|原來)(?:的)?(?:所有)?(?:的)?(?:指令|指示|规则|規則|设定|設定|提示词)(?:都|全部)?(?:已经|已經)?(?:无效|無效|作废|作廢|失效|取消)|(?:制限なし|制限のない)モードで|(?:이전|앞의|위의|기존|모든)\s*(?:\S+\s+){0,2}(?:지시|명령|지침|규칙|프롬프트|지시사항|설정)\S*\s*(?:모두\s*)?(?:무효|취소))`},
	{ID: "reveal/multi", Category: CatReveal, Lang: "any", Severity: 7,
		Pattern: `(?:muestra|muestrame|revela|revelame|dime|imprime|montre|montre-moi|revele|affiche|donne-moi|zeig|zeige|gib|verrate|mostra|mostrami|rivela|mostre|revele|покажи|раскрой|выведи|напиши|显示|輸出|输出|告诉我|告訴我|透露|打印|表示して|教えて|見せて|보여|알려|출력)\S*\s*.{0,30}?(?:prompt\s+(?:del|du|de|do)\s+(?:sistema|systeme)|system-?prompt|systemanweisung|системн\S*\s+(?:промпт|подсказк|инструкци)|系统提示|系統提示|系统指令|システムプロンプト|시스템\s*프롬프트)`},
}

// attemptSeed keys the per-scan memo of pattern attempts; nextAltID numbers alternatives.
var (
	attemptSeed = maphash.MakeSeed()
	nextAltID   = 1
)

// maxMatchLen bounds how far past its start a phrase match may reach; the anchored
// pattern only ever sees that much text, which keeps each attempt cheap.
const maxMatchLen = 256

func init() {
	if len(phraseRules) > 64 {
		panic("more than 64 phrase rules: widen MatchPhrases' bit set")
	}
	for i, r := range phraseRules {
		r.index = i
		r.Pattern = norm.NFKC.String(r.Pattern)
		r.ascii = isASCII(r.Pattern)
		regexp.MustCompile(r.Pattern) // report a bad pattern by its own text
		alts, err := splitAlternatives(r.Pattern)
		if err != nil {
			panic(fmt.Sprintf("phrase rule %s: %v", r.ID, err))
		}
		for _, p := range alts {
			starts, err := startLiterals(p)
			if err != nil {
				panic(fmt.Sprintf("phrase rule %s: %v", r.ID, err))
			}
			a := &ruleAlt{re: regexp.MustCompile(`^(?:` + p + `)`), starts: starts, wordStart: startsAtWordBoundary(p), must: mustLiterals(p)}
			for _, set := range a.must {
				var folded []string
				for _, k := range set {
					folded = append(folded, strings.ReplaceAll(k, "l", "i"))
				}
				a.mustLeet = append(a.mustLeet, folded)
			}
			// The leet view folds 'l' to 'i'; its patterns and start literals are folded the same.
			a.reLeet = regexp.MustCompile(`^(?:` + strings.ReplaceAll(p, "l", "i") + `)`)
			for _, k := range starts {
				a.startsLeet = append(a.startsLeet, strings.ReplaceAll(k, "l", "i"))
			}
			a.id = nextAltID
			nextAltID++
			r.alts = append(r.alts, a)
		}
	}
	buildStartIndex()
}

// splitAlternatives returns the top-level alternatives of pattern as patterns of their
// own (the whole pattern when it is not an alternation).
func splitAlternatives(pattern string) ([]string, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, err
	}
	if re.Op != syntax.OpAlternate {
		return []string{pattern}, nil
	}
	out := make([]string, len(re.Sub))
	for i, sub := range re.Sub {
		out[i] = sub.String()
	}
	return out, nil
}

// startsAtWordBoundary reports whether every match of pattern starts with \b, so it
// need only be tried where a word starts. It reads the parsed pattern, not its text: an
// alternative split out of a rule prints its \b as "(?-m:\b", and one whose \b was
// taken for a prefix shared with other alternatives prints none.
func startsAtWordBoundary(pattern string) bool {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return false
	}
	var starts func(re *syntax.Regexp) bool
	starts = func(re *syntax.Regexp) bool {
		switch re.Op {
		case syntax.OpWordBoundary:
			return true
		case syntax.OpCapture, syntax.OpConcat:
			return len(re.Sub) > 0 && starts(re.Sub[0])
		case syntax.OpAlternate:
			for _, sub := range re.Sub {
				if !starts(sub) {
					return false
				}
			}
			return true
		}
		return false
	}
	return starts(re)
}

// mustLiterals returns, for the parts of pattern's top-level sequence after its first
// that every match contains, the literals one of which that part starts with; only
// selective sets (literals of three bytes or more, at most 64 of them) are kept.
func mustLiterals(pattern string) [][]string {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil
	}
	re = re.Simplify()
	for re.Op == syntax.OpCapture {
		re = re.Sub[0]
	}
	if re.Op != syntax.OpConcat {
		return nil
	}
	var out [][]string
	first := true
	for _, sub := range re.Sub {
		switch sub.Op {
		case syntax.OpWordBoundary, syntax.OpBeginLine, syntax.OpBeginText, syntax.OpEmptyMatch:
			continue
		}
		if first {
			first = false
			continue
		}
		f, _, ok := firstsExact(sub)
		if !ok || len(f) > 64 {
			continue
		}
		selective := true
		for _, k := range f {
			if len(k) < 3 {
				selective = false
			}
		}
		if selective {
			out = append(out, f)
		}
	}
	return out
}

// startLiterals returns literal strings one of which every match of pattern starts with,
// so the pattern need only be tried, anchored, where one occurs. It fails for patterns
// whose matches can start anywhere.
func startLiterals(pattern string) ([]string, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, err
	}
	out, ok := firsts(re.Simplify())
	if !ok || len(out) == 0 {
		return nil, fmt.Errorf("pattern %q has no literal start; begin every alternative with a word", pattern)
	}
	slices.Sort(out)
	out = slices.Compact(out)
	// Drop literals that another literal is a prefix of: the shorter one finds them.
	var kept []string
	for _, s := range out {
		if len(kept) > 0 && strings.HasPrefix(s, kept[len(kept)-1]) {
			continue
		}
		kept = append(kept, s)
	}
	return kept, nil
}

// firsts computes the literal prefixes of re's matches (see startLiterals); exact says
// the prefixes are whole matches of re, so what follows re may extend them.
func firsts(re *syntax.Regexp) (out []string, ok bool) {
	out, _, ok = firstsExact(re)
	return out, ok
}

// maxStartLen is the length start literals are grown to, when the pattern allows.
const maxStartLen = 4

func firstsExact(re *syntax.Regexp) ([]string, bool, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		return []string{string(re.Rune)}, true, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i < len(re.Rune); i += 2 {
			if re.Rune[i+1]-re.Rune[i] > 16 {
				return nil, false, false
			}
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				out = append(out, string(r))
			}
		}
		return out, true, len(out) > 0 && len(out) <= 32
	case syntax.OpCapture:
		return firstsExact(re.Sub[0])
	case syntax.OpPlus:
		out, _, ok := firstsExact(re.Sub[0])
		return out, false, ok
	case syntax.OpRepeat:
		if re.Min < 1 {
			return nil, false, false
		}
		out, exact, ok := firstsExact(re.Sub[0])
		return out, exact && re.Min == 1 && re.Max == 1, ok
	case syntax.OpAlternate:
		var out []string
		exact := true
		for _, sub := range re.Sub {
			f, e, ok := firstsExact(sub)
			if !ok {
				return nil, false, false
			}
			out = append(out, f...)
			exact = exact && e
		}
		return out, exact, true
	case syntax.OpConcat:
		acc := []string{""}
		for _, sub := range re.Sub {
			switch sub.Op {
			case syntax.OpWordBoundary, syntax.OpBeginLine, syntax.OpBeginText, syntax.OpEmptyMatch:
				continue
			}
			f, exact, ok := firstsExact(sub)
			if !ok {
				break
			}
			if len(acc)*len(f) > 256 {
				break
			}
			next := make([]string, 0, len(acc)*len(f))
			for _, a := range acc {
				for _, b := range f {
					next = append(next, a+b)
				}
			}
			acc = next
			short := false
			for _, a := range acc {
				if len(a) < maxStartLen {
					short = true
				}
			}
			if !exact || !short {
				return acc, false, true
			}
		}
		if len(acc) == 1 && acc[0] == "" {
			return nil, false, false
		}
		for _, a := range acc {
			if a == "" {
				return nil, false, false
			}
		}
		return acc, false, true
	}
	return nil, false, false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// PhraseRules returns the phrase rules (read-only).
func PhraseRules() []*PhraseRule { return phraseRules }

// PhraseMatch is one phrase rule match in a view.
type PhraseMatch struct {
	Rule *PhraseRule
	// Start and End are the match's byte span in the view.
	Start, End int
	// Text is the matched normalised text.
	Text string
}

// startCand is a start literal of one alternative of a rule, with what MatchPhrases
// checks before reading the text kept inline so the check touches one cache line.
type startCand struct {
	rule      *PhraseRule
	alt       *ruleAlt
	lit       string
	bit       uint64 // 1 << rule.index
	ascii     bool   // rule.ascii
	wordStart bool   // alt.wordStart
	// pre holds the literal's first (up to) four bytes, little-endian, and preMask
	// their bits, to compare with the text's next four bytes in one step.
	pre, preMask uint32
}

// prefix4 returns pre and preMask of a start literal.
func prefix4(lit string) (pre, mask uint32) {
	for i := 0; i < len(lit) && i < 4; i++ {
		pre |= uint32(lit[i]) << (8 * i)
		mask |= 0xff << (8 * i)
	}
	return pre, mask
}

// ruleAlt is one top-level alternative of a rule's pattern, compiled on its own so an
// attempt at a start literal runs only the alternatives that can start there.
type ruleAlt struct {
	re, reLeet         *regexp.Regexp
	starts, startsLeet []string
	wordStart          bool
	id                 int
	// must lists literal sets one member of each of which every match contains (the
	// instruction noun, the addressee...): checked before the pattern runs, which rules
	// out most candidates for far less than an attempt. mustIDs and mustLeetIDs are the
	// same sets as numbers in mustPlain and mustLeet, whose occurrences a scan finds once.
	must, mustLeet       [][]string
	mustIDs, mustLeetIDs [][]int32
}

// startTable maps each pair of bytes to the candidates whose start literal may begin at
// the first of them: the one-byte literals of the first byte, then the longer literals
// beginning with the pair (the order a scan tries them in). Pairs share lists through a
// small index, so the table stays in cache.
type startTable struct {
	// one[c] is the list of the one-byte literals c, for the text's last byte.
	one [256]uint16
	// two[c<<8|d] is the list of the pair cd.
	two   [1 << 16]uint16
	lists [][]startCand // lists[0] is empty
	// anyPair and midPair are bit sets of the pairs whose list is not empty and whose
	// list has a candidate that may start inside a word: small enough to stay in the
	// first-level cache, so most positions cost no read of two.
	anyPair, midPair [1 << 10]uint64
}

var startIndex, startIndexLeet startTable

// Flags of a startTable entry, above its list number: the list has a candidate that may
// start inside a word, or one of an ASCII rule, so a scan can pass over positions where
// none of the list may start without reading it.
const (
	listMid   = 1 << 15
	listASCII = 1 << 14
	listNum   = listASCII - 1
)

func (st *startTable) build(cands []startCand) {
	var one [256][]startCand
	two := map[uint16][]startCand{}
	for _, c := range cands {
		if len(c.lit) == 1 {
			one[c.lit[0]] = append(one[c.lit[0]], c)
			continue
		}
		k := uint16(c.lit[0])<<8 | uint16(c.lit[1])
		two[k] = append(two[k], c)
	}
	st.lists = [][]startCand{nil}
	ids := map[string]uint16{}
	intern := func(l []startCand) uint16 {
		if len(l) == 0 {
			return 0
		}
		var key strings.Builder
		for _, c := range l {
			fmt.Fprintf(&key, "%p/%s\x00", c.alt, c.lit)
		}
		id, ok := ids[key.String()]
		if !ok {
			if len(st.lists) > listNum {
				panic("too many start literal lists")
			}
			id = uint16(len(st.lists))
			st.lists = append(st.lists, l)
			ids[key.String()] = id
		}
		for _, c := range l {
			if !c.wordStart {
				id |= listMid
			}
			if c.ascii {
				id |= listASCII
			}
		}
		return id
	}
	for c := range 256 {
		st.one[c] = intern(one[c])
		for d := range 256 {
			k := uint16(c)<<8 | uint16(d)
			l := append(one[c][:len(one[c]):len(one[c])], two[k]...)
			st.two[k] = intern(l)
			if st.two[k] != 0 {
				st.anyPair[k>>6] |= 1 << (k & 63)
			}
			if st.two[k]&listMid != 0 {
				st.midPair[k>>6] |= 1 << (k & 63)
			}
		}
	}
}

func buildStartIndex() {
	var plain, leet []startCand
	ids := func(lt *litTable, sets [][]string) [][]int32 {
		var out [][]int32
		for _, set := range sets {
			var s []int32
			for _, k := range set {
				s = append(s, lt.id(k))
			}
			out = append(out, s)
		}
		return out
	}
	for _, r := range phraseRules {
		for _, a := range r.alts {
			a.mustIDs, a.mustLeetIDs = ids(&mustPlain, a.must), ids(&mustLeet, a.mustLeet)
			for _, k := range a.starts {
				pre, mask := prefix4(k)
				plain = append(plain, startCand{rule: r, alt: a, lit: k, bit: 1 << r.index, ascii: r.ascii, wordStart: a.wordStart, pre: pre, preMask: mask})
			}
			for _, k := range a.startsLeet {
				pre, mask := prefix4(k)
				leet = append(leet, startCand{rule: r, alt: a, lit: k, bit: 1 << r.index, ascii: r.ascii, wordStart: a.wordStart, pre: pre, preMask: mask})
			}
		}
	}
	startIndex.build(plain)
	startIndexLeet.build(leet)
}

// litTable finds every occurrence of a set of literals (of at least three bytes) in one
// pass, indexing them by a hash of their first three bytes.
type litTable struct {
	lits  []string
	three [1 << 16]uint16
	lists [][]int32 // lists[three[hash3(k)]] are the literals whose first bytes hash so
	ids   map[string]int32
	// has is the bit set of the hashes in three, small enough to stay in cache.
	has [1 << 10]uint64
}

// hash3 hashes three bytes to 16 bits.
func hash3(a, b, c byte) uint16 {
	return uint16((uint32(a)<<16 | uint32(b)<<8 | uint32(c)) * 2654435761 >> 16)
}

// id returns the number of literal k, adding it.
func (lt *litTable) id(k string) int32 {
	if id, ok := lt.ids[k]; ok {
		return id
	}
	if len(k) < 3 {
		panic(fmt.Sprintf("must literal %q shorter than three bytes", k))
	}
	if lt.ids == nil {
		lt.ids = map[string]int32{}
		lt.lists = [][]int32{nil}
	}
	id := int32(len(lt.lits))
	lt.lits = append(lt.lits, k)
	lt.ids[k] = id
	h := hash3(k[0], k[1], k[2])
	lt.has[h>>6] |= 1 << (h & 63)
	if lt.three[h] == 0 {
		lt.three[h] = uint16(len(lt.lists))
		lt.lists = append(lt.lists, nil)
	}
	lt.lists[lt.three[h]] = append(lt.lists[lt.three[h]], id)
	return id
}

// mustPlain and mustLeet number the must literals of plain and leet views.
var mustPlain, mustLeet litTable

// literalScan holds every occurrence of the must literals in one text, found in one pass
// the first time a candidate needs them, and a cursor per literal: a scan only moves
// forward, so each check is a comparison instead of a search of the window.
type literalScan struct {
	occ [][]int32 // occ[id] are the offsets where literal id occurs, in order
	cur []int32   // occ[id][cur[id]] is the first at or after the last query's start
}

var literalScanPool = sync.Pool{New: func() any { return &literalScan{} }}

// reset finds the occurrences of lt's literals in t; it stops early when st says to give
// up (st.err), and is then of no use.
func (ls *literalScan) reset(st *stopper, lt *litTable, t string) {
	n := len(lt.lits)
	if cap(ls.occ) < n {
		ls.occ, ls.cur = make([][]int32, n), make([]int32, n)
	}
	ls.occ, ls.cur = ls.occ[:n], ls.cur[:n]
	for i := range ls.occ {
		ls.occ[i], ls.cur[i] = ls.occ[i][:0], 0
	}
	for p := 0; p+2 < len(t); p++ {
		if st.at(p) {
			return
		}
		h := hash3(t[p], t[p+1], t[p+2])
		if lt.has[h>>6]&(1<<(h&63)) == 0 {
			continue
		}
		li := lt.three[h]
		for _, id := range lt.lists[li] {
			if strings.HasPrefix(t[p:], lt.lits[id]) {
				ls.occ[id] = append(ls.occ[id], int32(p))
			}
		}
	}
}

// containsAllAt reports whether t[i:end] contains a member of every set, as
// strings.Contains would find it. Successive calls must not decrease i.
func (ls *literalScan) containsAllAt(lt *litTable, sets [][]int32, i, end int) bool {
	for _, set := range sets {
		found := false
		for _, id := range set {
			occ, c := ls.occ[id], ls.cur[id]
			for int(c) < len(occ) && int(occ[c]) < i {
				c++
			}
			ls.cur[id] = c
			if int(c) < len(occ) && int(occ[c])+len(lt.lits[id]) <= end {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// MatchPhrases runs the phrase rules over a view. leet says the view is a LeetView (its
// patterns are folded); asciiOnly runs only the ASCII (English) rules, for ROT13. It
// returns at most one match per rule, the first. The text is walked once: at each rune
// start, the rules having a start literal there are tried, anchored, so the work grows
// with the text and not with the number of rules.
func MatchPhrases(t string, leet, asciiOnly bool) []PhraseMatch {
	out, _ := matchPhrases(&stopper{ctx: context.Background()}, t, leet, asciiOnly)
	return out
}

// matchPhrases is MatchPhrases that gives up, with st.err, when st says to.
func matchPhrases(st *stopper, t string, leet, asciiOnly bool) ([]PhraseMatch, error) {
	var out []PhraseMatch
	idx, lt := &startIndex, &mustPlain
	if leet {
		idx, lt = &startIndexLeet, &mustLeet
	}
	var done uint64 // bit i: rule i matched already (there are fewer than 64 rules)
	var attempts map[uint64]int
	var lits *literalScan
	prevWord := false
	for i := 0; i < len(t); i++ {
		if st.at(i) {
			break
		}
		c := t[i]
		wordStart := !prevWord
		prevWord = isWordASCII(c)
		if c&0xc0 == 0x80 {
			continue // inside a rune
		}
		var li uint16
		if i+1 < len(t) {
			k := uint16(c)<<8 | uint16(t[i+1])
			set := &idx.anyPair
			if !wordStart {
				set = &idx.midPair
			}
			if set[k>>6]&(1<<(k&63)) == 0 {
				continue
			}
			li = idx.two[k]
		} else {
			li = idx.one[c]
		}
		if li == 0 || (!wordStart && li&listMid == 0) || (asciiOnly && li&listASCII == 0) {
			continue
		}
		var next4 uint32 // the text's next four bytes, when there are four
		has4 := i+4 <= len(t)
		if has4 {
			next4 = uint32(t[i]) | uint32(t[i+1])<<8 | uint32(t[i+2])<<16 | uint32(t[i+3])<<24
		}
		for _, cd := range idx.lists[li&listNum] {
			if done&cd.bit != 0 || (asciiOnly && !cd.ascii) || (cd.wordStart && !wordStart) {
				continue
			}
			if has4 && next4&cd.preMask != cd.pre {
				continue
			}
			if (!has4 || len(cd.lit) > 4) && !strings.HasPrefix(t[i:], cd.lit) {
				continue
			}
			re, must := cd.alt.re, cd.alt.mustIDs
			if leet {
				re, must = cd.alt.reLeet, cd.alt.mustLeetIDs
			}
			wend := min(len(t), i+maxMatchLen)
			if len(must) > 0 {
				if lits == nil {
					// The literals of the whole text, found once: a loop of its own over
					// the text, which looks at the context from its start.
					lits = literalScanPool.Get().(*literalScan)
					ls := stopper{ctx: st.ctx}
					if lits.reset(&ls, lt, t); ls.err != nil {
						st.err = ls.err
						break
					}
				}
				if !lits.containsAllAt(lt, must, i, wend) {
					continue
				}
			}
			win := t[i:wend]
			// Repeated text (logs, templates, padding) repeats attempts: remember the
			// outcome of each (alternative, window) pair within this scan.
			if attempts == nil {
				attempts = map[uint64]int{}
			}
			key := maphash.String(attemptSeed, win) ^ uint64(cd.alt.id)*0x9e3779b97f4a7c15
			end, seen := attempts[key]
			if !seen {
				end = -1
				if loc := re.FindStringIndex(win); loc != nil {
					end = loc[1]
				}
				attempts[key] = end
			}
			if end >= 0 {
				done |= cd.bit
				out = append(out, PhraseMatch{Rule: cd.rule, Start: i, End: i + end, Text: t[i : i+end]})
			}
		}
	}
	if lits != nil {
		literalScanPool.Put(lits)
	}
	if st.err != nil {
		return nil, st.err
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Rule.index < out[b].Rule.index })
	return out, nil
}

func isWordASCII(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// String describes a match for a reason.
func (m PhraseMatch) String() string {
	return fmt.Sprintf("phrase rule %s matched %q", m.Rule.ID, clip.Marked(m.Text, 80))
}
